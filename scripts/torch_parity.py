"""PyTorch side of `cargo xtask parity`.

  python torch_parity.py make DIR      writes DIR/vgg16_bn.{pth,safetensors}, DIR/x.npy, DIR/y_torch.npy
  python torch_parity.py families DIR  writes DIR/NAME.pth, DIR/NAME_x.npy, DIR/NAME_y.npy for every
                                       branched family (torchvision's, and the CIFAR ResNet-20)
  python torch_parity.py vits DIR      writes DIR/NAME.pth, DIR/NAME_x.npy, DIR/NAME_y.npy for vit_b_16,
                                       vit_b_32 and vit_cifar, every parameter random (and
                                       DIR/vit_b_32.safetensors)
  python torch_parity.py tiny-vit DIR  writes the small ViT fixture the flex tests read:
                                       DIR/tiny_vit.safetensors and DIR/tiny_vit.json (x and y)
  python torch_parity.py compare A B   exits non-zero unless max|A-B| <= 1e-4 * max|A|
  python torch_parity.py latency CxHxW [RUNS] [MODEL]   batch-1 latency in torch of VGG16-bn
                                       (10 classes, the default) or vit_b_16 (1000 classes)

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


class CifarBlock(nn.Module):
    """He et al. 2016 basic block with a 1x1 projection shortcut (option B)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
    def __init__(self, n: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        cin = 16
        for s, planes in enumerate([16, 32, 64]):
            blocks = []
            for b in range(n):
                blocks.append(CifarBlock(cin, planes, 2 if (s > 0 and b == 0) else 1))
                cin = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# name, input side; every model has 10 classes.
FAMILIES = [
    ("resnet18", 64), ("resnet34", 64), ("resnet50", 64), ("resnet20", 32), ("resnet56", 32),
    ("mobilenet_v2", 64), ("mobilenet_v3_small", 64), ("mobilenet_v3_large", 64), ("efficientnet_b0", 64),
]


def family(name: str) -> nn.Module:
    if name == "resnet20":
        return CifarResNet(3)
    if name == "resnet56":
        return CifarResNet(9)
    import torchvision
    return getattr(torchvision.models, name)(num_classes=10)


def families(out_dir: str) -> None:
    for name, side in FAMILIES:
        torch.manual_seed(0)
        model = family(name)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.2)
                    m.running_mean.normal_(0.0, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        model.eval()
        x = torch.randn(2, 3, side, side)
        with torch.no_grad():
            y = model(x)
        torch.save(model.state_dict(), f"{out_dir}/{name}.pth")
        np.save(f"{out_dir}/{name}_x.npy", x.numpy())
        np.save(f"{out_dir}/{name}_y.npy", y.numpy())
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params:,} parameters, x {tuple(x.shape)} -> y {tuple(y.shape)}")


# name, image side, classes. vit_cifar is torchvision's VisionTransformer with the shape of
# fasterai's `vit_cifar` (its stochastic depth is the identity at inference).
VITS = [("vit_b_16", 224, 1000), ("vit_b_32", 224, 1000), ("vit_cifar", 32, 10)]


def vit(name: str) -> nn.Module:
    from torchvision.models import vision_transformer as V
    if name == "vit_cifar":
        return V.VisionTransformer(image_size=32, patch_size=4, num_layers=6, num_heads=3,
                                   hidden_dim=192, mlp_dim=384, num_classes=10)
    if name == "tiny_vit":
        return V.VisionTransformer(image_size=8, patch_size=4, num_layers=2, num_heads=2,
                                   hidden_dim=8, mlp_dim=16, num_classes=3)
    return getattr(V, name)()


def randomize(model: nn.Module) -> None:
    """Every parameter random: torchvision starts the head and the class token at zero, which
    would make a comparison of logits trivial."""
    with torch.no_grad():
        norms = set()
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                norms.update(id(p) for p in m.parameters())
        for name, p in model.named_parameters():
            if id(p) in norms:
                continue
            if p.dim() >= 2 and "token" not in name and "embedding" not in name:
                p.normal_(0.0, (p[0].numel()) ** -0.5)  # activations stay O(1) layer after layer
            else:
                p.normal_(0.0, 0.2)


def vits(out_dir: str) -> None:
    for name, side, _ in VITS:
        torch.manual_seed(0)
        model = vit(name)
        randomize(model)
        model.eval()
        x = torch.randn(2, 3, side, side)
        with torch.no_grad():
            y = model(x)
        torch.save(model.state_dict(), f"{out_dir}/{name}.pth")
        if name == "vit_b_32":
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                      f"{out_dir}/{name}.safetensors")
        np.save(f"{out_dir}/{name}_x.npy", x.numpy())
        np.save(f"{out_dir}/{name}_y.npy", y.numpy())
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params:,} parameters, x {tuple(x.shape)} -> y {tuple(y.shape)}, "
              f"max|y| {float(y.abs().max()):.3f}")


def tiny_vit(out_dir: str) -> None:
    import json
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = vit("tiny_vit")
    randomize(model)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = model(x)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              f"{out_dir}/tiny_vit.safetensors")
    with open(f"{out_dir}/tiny_vit.json", "w") as f:
        json.dump({"torch": torch.__version__, "x_shape": list(x.shape), "x": x.flatten().tolist(),
                   "y_shape": list(y.shape), "y": y.flatten().tolist()}, f)
    print(f"tiny_vit: {sum(p.numel() for p in model.parameters())} parameters, y {y.tolist()}")


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


def latency(shape: str, runs: int = 20, name: str = "vgg16_bn") -> None:
    import time
    c, h, w = (int(v) for v in shape.split("x"))
    torch.manual_seed(0)
    model = (VGG(10) if name == "vgg16_bn" else vit(name)).eval()
    x = torch.randn(1, c, h, w)
    times = []
    with torch.inference_mode():
        for i in range(runs + 3):
            start = time.perf_counter()
            model(x)
            if i >= 3:
                times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads) {name} 1x{shape}: "
          f"median {times[len(times) // 2]:.2f} ms, min {times[0]:.2f} ms, max {times[-1]:.2f} ms ({runs} runs)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "families":
        families(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "vits":
        vits(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "tiny-vit":
        tiny_vit(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    elif len(sys.argv) in (3, 4, 5) and sys.argv[1] == "latency":
        latency(sys.argv[2], int(sys.argv[3]) if len(sys.argv) >= 4 else 20,
                sys.argv[4] if len(sys.argv) == 5 else "vgg16_bn")
    else:
        sys.exit(__doc__)
