"""CPU inference latency, one run: fasterai's engine (`fasterai bench`, prepared and --plain)
against PyTorch eager and onnxruntime (on fasterai's own float ONNX export), every model with 10
classes and random weights, at batch 1 (latency) and batch 32 (throughput).

    python engine_vs_torch.py CLI WORKDIR [--threads N] [--rounds R] [--quick | --batch B]
                              [--models LABEL,...]

Each row is measured in R rounds (default 3 at batch 1, 1 at batch 32), each round timing ours,
--plain, PyTorch and onnxruntime one after the other; each keeps its best round's median, so a
busy spell of a shared machine does not land on one of them only. Prints a markdown table per
batch size, with ours / PyTorch and ours / onnxruntime ratios, and writes
WORKDIR/engine_vs_torch.json. Needs the venv of `cargo xtask parity` plus onnxruntime. Models
our ONNX export does not take yet (transformers) run in onnxruntime from PyTorch's own export of
the same architecture (marked † in the table). `--models` keeps the rows whose label starts with
one of the names given.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from torch_parity import CFG16, CifarResNet  # noqa: E402


class SmallVgg(nn.Module):
    """fasterai's `vgg16_bn_small --width W`: ceil-mode pools, 1×1 average pool, two Linears."""

    def __init__(self, width: float, num_classes: int = 10):
        super().__init__()
        layers, c_in = [], 3
        for v in CFG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                c = max(1, round(v * width))
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_in = c
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(c_in, c_in), nn.ReLU(True), nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def torchvision(name):
    import torchvision.models as tvm
    return lambda: getattr(tvm, name)(num_classes=10)


def folded_vgg():
    import torchvision.models as tvm
    from torch.fx.experimental.optimization import fuse
    return fuse(tvm.vgg16_bn(num_classes=10).eval())


# label, fasterai model arguments, torch builder (None: no PyTorch form), input sides.
ROWS = [
    ("vgg16_bn", ["vgg16_bn", "--num-classes", "10"], torchvision("vgg16_bn"), [224, 32]),
    ("vgg16_bn folded", "FOLDED", folded_vgg, [224, 32]),
    ("vgg16_bn_small w0.25 (CIFAR)", ["vgg16_bn_small", "--width", "0.25"], lambda: SmallVgg(0.25), [32]),
    ("resnet18", ["resnet18", "--num-classes", "10"], torchvision("resnet18"), [224, 32]),
    ("resnet50", ["resnet50", "--num-classes", "10"], torchvision("resnet50"), [224, 32]),
    ("mobilenet_v2", ["mobilenet_v2", "--num-classes", "10"], torchvision("mobilenet_v2"), [224, 32]),
    ("mobilenet_v3_small", ["mobilenet_v3_small", "--num-classes", "10"], torchvision("mobilenet_v3_small"), [224, 32]),
    ("mobilenet_v3_large", ["mobilenet_v3_large", "--num-classes", "10"], torchvision("mobilenet_v3_large"), [224, 32]),
    ("efficientnet_b0", ["efficientnet_b0", "--num-classes", "10"], torchvision("efficientnet_b0"), [224, 32]),
    ("resnet20 (CIFAR)", ["resnet20"], lambda: CifarResNet(3), [32]),
    ("resnet20 pruned 2× MACs", "PRUNED", None, [32]),
    ("vit_b_16", ["vit_b_16", "--num-classes", "10"], torchvision("vit_b_16"), [224]),
    ("vit_cifar", ["vit_cifar"], lambda: vit_cifar(), [32]),
]


def vit_cifar():
    """fasterai's `vit_cifar`: torchvision's ViT with 4×4 patches, 6 layers, 3 heads, width 192."""
    from torchvision.models.vision_transformer import VisionTransformer
    return VisionTransformer(image_size=32, patch_size=4, num_layers=6, num_heads=3,
                             hidden_dim=192, mlp_dim=384, num_classes=10)


def sh(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def runs_for(side, batch):
    if batch == 1:
        return (20, 3) if side == 32 else (10, 3)
    return (5, 1) if side == 32 else (3, 1)


def ours(cli, model, side, batch, threads, plain):
    runs, warmup = runs_for(side, batch)
    args = [cli, "bench", *model, "--input", f"3x{side}x{side}", "--batch", str(batch),
            "--runs", str(runs), "--warmup", str(warmup), "--threads", str(threads), "--json"]
    if plain:
        args.append("--plain")
    return json.loads(sh(*args))


def timed(f, runs, warmup):
    times = []
    for i in range(runs + warmup):
        start = time.perf_counter()
        f()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def pytorch(build, side, batch):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(batch, 3, side, side)
    runs, warmup = runs_for(side, batch)
    with torch.inference_mode():
        return timed(lambda: model(x), runs, warmup)


def export(cli, model, build, side, workdir):
    """Our float ONNX export of `model` (once per row: its rounds and sides reuse it), or
    PyTorch's export of `build` where ours refuses the model; with whether it is PyTorch's."""
    path = os.path.join(workdir, "model.onnx")
    try:
        sh(cli, "export", *model, "-o", path, "--force")
        return path, False
    except subprocess.CalledProcessError:
        if build is None:
            return None, False
        torch.manual_seed(0)
        x = torch.randn(1, 3, side, side)
        torch.onnx.export(build().eval(), x, path, input_names=["input"], dynamo=False,
                          dynamic_axes={"input": {0: "batch"}})
        return path, True


def ort(path, workdir, side, batch, threads):
    if path is None:
        return None
    import onnx
    import onnxruntime as rt
    m = onnx.load(path)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = side, side
    resized = os.path.join(workdir, "model_resized.onnx")
    onnx.save(m, resized)
    opts = rt.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        session = rt.InferenceSession(resized, opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, 3, side, side)).astype(np.float32)
        runs, warmup = runs_for(side, batch)
        return timed(lambda: session.run(None, {"input": x}), runs, warmup)
    except Exception as e:  # the export fixes a size the model needs (e.g. a 7×7 pool)
        print(f"  onnxruntime at {side}²: {str(e).splitlines()[0][:120]}", file=sys.stderr)
        return None


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def best(a, b):
    """The smaller of two timings, either of which may be missing."""
    return b if a is None else a if b is None else min(a, b)


def main():
    cli, workdir = sys.argv[1], sys.argv[2]
    threads = int(arg("--threads", 2))
    batches = [1] if "--quick" in sys.argv else [int(arg("--batch", 0))] if "--batch" in sys.argv else [1, 32]
    os.makedirs(workdir, exist_ok=True)
    torch.set_num_threads(threads)
    folded = os.path.join(workdir, "vgg16_bn_folded.safetensors")
    pruned = os.path.join(workdir, "resnet20_half_macs.safetensors")
    sh(cli, "fold", "vgg16_bn", "--num-classes", "10", "-o", folded, "--force")
    sh(cli, "prune", "resnet20", "--speedup", "2", "--context", "global", "-o", pruned, "--force")
    isa = "AVX-512" if "avx512f" in open("/proc/cpuinfo").read() else "AVX2"
    cpu = next(l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    print(f"{cpu}, {os.cpu_count()} cores, {isa}; {threads} threads each; torch {torch.__version__}")
    results = []
    for batch in batches:
        print(f"\n### batch {batch}" + (" (ms)" if batch == 1 else " (images/s)"))
        print("| model | input | ours | --plain | PyTorch | onnxruntime | ours/PyTorch | ours/ort | first call (ms) | peak (MB) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        only = arg("--models", None)
        for label, model, build, sides in ROWS:
            if only and not any(label.startswith(name) for name in only.split(",")):
                continue
            model = {"FOLDED": [folded], "PRUNED": [pruned]}.get(model, model) if isinstance(model, str) else model
            onnx_path, theirs = export(cli, model, build, sides[0], workdir)
            for side in sides:
                rounds = int(arg("--rounds", 3 if batch == 1 else 1))
                fast = plain = tt = rt_ms = None
                for _ in range(rounds):
                    f = ours(cli, model, side, batch, threads, False)
                    fast = f if fast is None or f["median_ms"] < fast["median_ms"] else fast
                    p = ours(cli, model, side, batch, threads, True)["median_ms"]
                    plain = best(plain, p)
                    tt = best(tt, pytorch(build, side, batch) if build else None)
                    rt_ms = best(rt_ms, ort(onnx_path, workdir, side, batch, threads))
                row = dict(model=label, side=side, batch=batch, ours_ms=fast["median_ms"],
                           plain_ms=plain, torch_ms=tt, ort_ms=rt_ms, ort_on_torch_export=theirs, rounds=rounds,
                           first_ms=fast["first_ms"], peak_mb=fast.get("peak_rss_mb"),
                           paths=fast["engine"]["conv_paths"])
                results.append(row)
                show = (lambda ms: f"{ms:.2f}") if batch == 1 else (lambda ms: f"{batch / ms * 1e3:.1f}")
                cell = lambda v: show(v) if v else "–"  # noqa: E731
                # Time ratios at every batch size (below 1: ours is faster).
                ratio = lambda v: f"{fast['median_ms'] / v:.2f}×" if v else "–"  # noqa: E731
                mark = "†" if theirs and rt_ms else ""
                print(f"| {label} | {side}² | {cell(fast['median_ms'])} | {cell(plain)} | "
                      f"{cell(tt)} | {cell(rt_ms)}{mark} | {ratio(tt)} | {ratio(rt_ms)} | "
                      f"{fast['first_ms']:.0f} | {fast.get('peak_rss_mb') or 0:.0f} |", flush=True)
    with open(os.path.join(workdir, "engine_vs_torch.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\nours/PyTorch and ours/ort are ratios of times (below 1: ours is faster) at every batch size;"
          " †: onnxruntime on PyTorch's export of the same architecture (ours does not export it yet).")


if __name__ == "__main__":
    main()
