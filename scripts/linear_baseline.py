"""A linear classifier on raw CIFAR-10 pixels (multinomial logistic regression), the floor a
trained model should clear: `python linear_baseline.py DIR [VALID_FILE ...]`.

Trains on data_batch_1 and data_batch_2 (20,000 images, per-channel standardised, as fasterai's
training does) with full-batch L-BFGS and a small L2 penalty; prints accuracy on each VALID_FILE
(default: data_batch_5 and test_batch_first1000). Needs torch (the parity venv).
"""
import gzip
import os
import sys

import numpy as np
import torch


def load(path: str):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8).reshape(-1, 3073)
    return raw[:, 1:].astype(np.float32) / 255.0, raw[:, 0].astype(np.int64)


def find(directory: str, name: str) -> str:
    for candidate in (name, name + ".bin", name + ".bin.gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    sys.exit(f"no {name} in {directory}")


def main() -> None:
    directory = sys.argv[1]
    valid = sys.argv[2:] or ["data_batch_5", "test_batch_first1000"]
    parts = [load(find(directory, n)) for n in ("data_batch_1", "data_batch_2")]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    mean = x.reshape(-1, 3, 1024).mean(axis=(0, 2)).repeat(1024)
    std = x.reshape(-1, 3, 1024).std(axis=(0, 2)).repeat(1024)
    x, y = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    torch.manual_seed(0)
    model = torch.nn.Linear(3072, 10)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=200, history_size=20)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y) + 1e-3 * model.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    train_acc = (model(x).argmax(1) == y).float().mean().item()
    print(f"linear classifier on raw pixels: train accuracy {100 * train_acc:.2f} % (20,000 images)")
    for name in valid:
        vx, vy = load(find(directory, name))
        vx = torch.from_numpy((vx - mean) / std)
        acc = (model(vx).argmax(1) == torch.from_numpy(vy)).float().mean().item()
        print(f"  {name}: {100 * acc:.2f} % ({len(vy):,} images)")


if __name__ == "__main__":
    main()
