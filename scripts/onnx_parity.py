"""ONNX side of `cargo xtask parity` (torch 2.9, torchvision 0.24, onnx, onnxruntime).

  python onnx_parity.py export DIR       writes DIR/NAME.onnx (torch.onnx.export, opset 17, dynamic
                                         batch), DIR/NAME_x.npy and DIR/NAME_ort.npy (onnxruntime's
                                         outputs) for torchvision families with random weights
  python onnx_parity.py check FILE X Y   onnx.checker on FILE, then onnxruntime on X (batch 2 and a
                                         single sample: the batch axis must be dynamic) against Y
                                         (ours); exits non-zero unless max|diff| <= 1e-4 * max|Y|
                                         (QDQ graphs: 2e-2 and the same class, see check())

Nothing here is committed; the files live in the parity work folder.
"""
import sys

import numpy as np
import torch
from torch import nn

# name, input side, export variant. `fused`: the TorchScript exporter's default in eval mode
# folds each BatchNorm into its conv; `bn`: BatchNormalization nodes kept (training=PRESERVE);
# `dynamo`: torch 2.9's default exporter (torch.export, opset 18; ReduceMean for pooling).
MODELS = [
    ("resnet18", 32, "fused"),
    ("resnet18", 32, "bn"),
    ("mobilenet_v2", 64, "bn"),
    ("mobilenet_v3_small", 64, "bn"),
    ("efficientnet_b0", 64, "bn"),
    ("vgg11_bn", 224, "bn"),
    ("resnet18", 32, "dynamo"),
    ("mobilenet_v3_small", 32, "dynamo"),
    ("efficientnet_b0", 32, "dynamo"),
]


def randomize(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)


def export(out_dir: str) -> None:
    import onnxruntime as ort
    import torchvision

    for name, side, variant in MODELS:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(num_classes=10)
        randomize(model)
        model.eval()
        x = torch.randn(2, 3, side, side)
        tag = f"{name}_{variant}"
        path = f"{out_dir}/{tag}.onnx"
        if variant == "dynamo":
            torch.onnx.export(
                model, (x,), path, dynamo=True, opset_version=18, input_names=["x"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            )
        else:
            training = torch.onnx.TrainingMode.PRESERVE if variant == "bn" else torch.onnx.TrainingMode.EVAL
            torch.onnx.export(
                model, (x,), path, dynamo=False, opset_version=17, training=training,
                input_names=["x"], output_names=["logits"],
                dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            )
        with torch.no_grad():
            y_torch = model(x).numpy()
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        y_ort = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        np.save(f"{out_dir}/{tag}_x.npy", x.numpy())
        np.save(f"{out_dir}/{tag}_ort.npy", y_ort)
        diff = float(np.abs(y_ort - y_torch).max() / np.abs(y_torch).max())
        params = sum(p.numel() for p in model.parameters())
        print(f"{tag}: exported ({params:,} parameters in torch), onnxruntime vs torch relative max|diff| {diff:.1e}")


def check(path: str, x_path: str, y_path: str) -> None:
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    quantized = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    bar = 2e-2 if quantized else 1e-4
    x, ours = np.load(x_path), np.load(y_path)

    def run(optimize: bool):
        options = ort.SessionOptions()
        if not optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        return session.run(None, {feed: x})[0], session.run(None, {feed: x[:1]})[0]

    # QDQ graphs: checked with ORT's graph rewrites off (the ONNX semantics), and reported with
    # them on (fused integer kernels). A float sum in another order can land a value on the
    # other side of a rounding boundary and move its code by one step, which later layers
    # carry (onnxruntime's own batch-1 and batch-N outputs differ that way too): the bar is
    # 2e-2 of the output scale and the same class for every sample. Weights-only graphs
    # (DequantizeLinear on weights) are exact and keep the float bar.
    y, single = run(optimize=not quantized)
    if y.shape != ours.shape:
        sys.exit(f"{path}: shape mismatch: onnxruntime {y.shape}, fasterai {ours.shape}")
    diff = float(np.abs(y - ours).max())
    scale = float(np.abs(y).max())
    batch_ok = np.abs(single - y[:1]).max() <= (bar if quantized else 1e-5) * scale
    ok = diff <= bar * scale and batch_ok
    if quantized:
        ok = ok and bool(np.all(y.argmax(1) == ours.argmax(1)))
    fused = ""
    if quantized:
        y_int, _ = run(optimize=True)
        fused = (f"; with ORT's integer kernels {float(np.abs(y_int - ours).max()) / scale:.1e}, "
                 f"same class {np.mean(y_int.argmax(1) == ours.argmax(1)):.0%}")
    print(f"{path}: onnx.checker OK, onnxruntime vs fasterai relative max|diff| {diff / scale:.1e}, "
          f"batch 1 {'OK' if batch_ok else 'differs'}{fused} -> {'OK' if ok else 'FAIL'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "export":
        export(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
