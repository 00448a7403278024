"""PyTorch's own int8 on the same weights as a fasterai model file, for BENCHMARKS.md (issue 13).

    python scripts/quantize_vs_torch.py MODEL.safetensors CIFAR_DIR [--threads 2] [--runs 200]

Builds the model from the architecture JSON in the file's metadata (sequential and branched
graphs of the ops VGG uses), loads the float weights, then measures on the CIFAR-10 file given
by --valid (default data_batch_5, the split our runs validate on): accuracy and batch-1 latency at 32×32 of float, `torch.ao` dynamic int8 (Linear layers only:
PyTorch's dynamic quantization does not cover convolutions) and FX static int8 (per-channel
weights, histogram-calibrated activations on 512 training images; x86 backend), printed as JSON.
Run it in the venv of `cargo xtask parity` (torch 2.9).
"""

import argparse
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.numpy import load_file

from bench_vs_torch import torch_latency

MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)


def read_architecture(path):
    raw = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    return json.loads(header["__metadata__"]["fasterai.architecture"])


def layer(spec):
    kind = spec["type"]
    if kind == "Conv2d":
        return nn.Conv2d(
            spec["in_channels"], spec["out_channels"], spec["kernel_size"],
            stride=spec.get("stride", [1, 1]), padding=spec.get("padding", [0, 0]),
            dilation=spec.get("dilation", [1, 1]), groups=spec.get("groups", 1),
            bias=spec.get("bias", True))
    if kind == "BatchNorm2d":
        return nn.BatchNorm2d(spec["num_features"], eps=spec.get("eps", 1e-5))
    if kind == "Linear":
        return nn.Linear(spec["in_features"], spec["out_features"], bias=spec.get("bias", True))
    if kind == "ReLU":
        return nn.ReLU()
    if kind == "MaxPool2d":
        return nn.MaxPool2d(spec["kernel_size"], spec["stride"], spec.get("padding", 0),
                            ceil_mode=spec.get("ceil_mode", False))
    if kind == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d(spec["output_size"])
    if kind == "Flatten":
        return nn.Flatten()
    if kind in ("Dropout", "Identity"):
        return nn.Identity()
    raise SystemExit(f"op {kind} is not handled by this script")


class Chain(nn.Module):
    """The graph as a chain (VGG's graphs are chains; branched ones are refused)."""

    def __init__(self, arch):
        super().__init__()
        self.layers = nn.ModuleDict()
        previous = "input"
        for node in arch["nodes"]:
            if node["inputs"] != [previous]:
                raise SystemExit("only chains are handled by this script")
            self.layers[node["name"].replace(".", "_")] = layer(node["op"])
            previous = node["name"]
        self.names = [n["name"] for n in arch["nodes"]]

    def forward(self, x):
        for module in self.layers.values():
            x = module(x)
        return x


def load(path):
    arch = read_architecture(path)
    model = Chain(arch)
    tensors = load_file(path)
    state = {}
    for key, value in tensors.items():
        node, _, param = key.rpartition(".")
        state[f"layers.{node.replace('.', '_')}.{param}"] = torch.from_numpy(value.copy())
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"weights do not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model.eval()


def cifar(path, limit=None):
    raw = np.frombuffer(gzip.open(path).read(), dtype=np.uint8).reshape(-1, 3073)[:limit]
    labels = raw[:, 0].astype(np.int64)
    images = raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    images = (images - MEAN[None, :, None, None]) / STD[None, :, None, None]
    return torch.from_numpy(images), torch.from_numpy(labels)


def accuracy(model, images, labels):
    with torch.inference_mode():
        right = sum((model(images[i : i + 500]).argmax(1) == labels[i : i + 500]).sum().item()
                    for i in range(0, len(labels), 500))
    return right / len(labels)


def size_mb(model):
    path = Path("/tmp/_quantize_vs_torch.pt")
    torch.save(model.state_dict(), path)
    size = path.stat().st_size / 1e6
    path.unlink()
    return size


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("cifar_dir")
    parser.add_argument("--valid", default="data_batch_5.bin.gz")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.cifar_dir)
    images, labels = cifar(data / args.valid)
    calib, _ = cifar(data / "data_batch_1.bin.gz", 512)

    float_model = load(args.model)
    dynamic = torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(load(args.model), get_default_qconfig_mapping("x86"), (calib[:1],))
    with torch.inference_mode():
        for i in range(0, len(calib), 64):
            prepared(calib[i : i + 64])
    static = convert_fx(prepared)
    result = {}
    for name, model in [("float", float_model), ("dynamic_int8", dynamic), ("static_int8", static)]:
        result[name] = {
            "accuracy": accuracy(model, images, labels),
            "latency_ms": torch_latency(model, 32, args.runs),
            "state_dict_mb": size_mb(model),
        }
    print(json.dumps({"model": args.model, "threads": args.threads, **result}, indent=1))


if __name__ == "__main__":
    main()
