"""PyTorch side of `cargo xtask parity`.

  python torch_parity.py make DIR      writes DIR/vgg16_bn.{pth,safetensors}, DIR/x.npy, DIR/y_torch.npy
  python torch_parity.py compare A B   exits non-zero unless max|A-B| <= 1e-4 * max|A|
  python torch_parity.py latency CxHxW [RUNS]   VGG16-bn (10 classes) batch-1 latency in torch

The VGG16-bn (10 classes) is built with torchvision's exact layer layout in plain torch (no
torchvision needed), randomly initialised with non-trivial BatchNorm running statistics, and run
in eval mode. Nothing here is committed: checkpoints are ~0.5 GB.
"""
import sys

import numpy as np
import torch
from torch import nn

CFG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers, c_in = [], 3
        for v in CFG16:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def make(out_dir: str) -> None:
    torch.manual_seed(0)
    model = VGG(10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, nn.Conv2d):
                # Keep activations O(1) through 13 layers so the comparison is meaningful.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                m.bias.normal_(0.0, 0.01)
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        y = model(x)
    state = model.state_dict()
    torch.save(state, f"{out_dir}/vgg16_bn.pth")
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, f"{out_dir}/vgg16_bn.safetensors")
    np.save(f"{out_dir}/x.npy", x.numpy())
    np.save(f"{out_dir}/y_torch.npy", y.numpy())
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads): wrote checkpoint, x {tuple(x.shape)}, y {tuple(y.shape)}")


def compare(expected_path: str, actual_path: str) -> None:
    expected, actual = np.load(expected_path), np.load(actual_path)
    if expected.shape != actual.shape:
        sys.exit(f"shape mismatch: torch {expected.shape}, fasterai {actual.shape}")
    diff = float(np.abs(expected - actual).max())
    scale = float(np.abs(expected).max())
    ok = diff <= 1e-4 * scale
    print(f"{actual_path}: max|diff| = {diff:.3e}, max|y| = {scale:.3e}, relative {diff / scale:.2e} -> {'OK' if ok else 'FAIL'}")
    if not ok:
        sys.exit(1)


def latency(shape: str, runs: int = 20) -> None:
    import time
    c, h, w = (int(v) for v in shape.split("x"))
    torch.manual_seed(0)
    model = VGG(10).eval()
    x = torch.randn(1, c, h, w)
    times = []
    with torch.inference_mode():
        for i in range(runs + 3):
            start = time.perf_counter()
            model(x)
            if i >= 3:
                times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads) vgg16_bn 1x{shape}: "
          f"median {times[len(times) // 2]:.2f} ms, min {times[0]:.2f} ms, max {times[-1]:.2f} ms ({runs} runs)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "latency":
        latency(sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 20)
    else:
        sys.exit(__doc__)
