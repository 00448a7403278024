"""fasterai-rs group pruning against Torch-Pruning, side by side, in one run.

  python torch_pruning_compare.py FASTERAI_EXAMPLE [MODELS]

FASTERAI_EXAMPLE is the built `prune_families` example (cargo build --release -p fasterai
--example prune_families); MODELS a comma list (default resnet18,resnet50,mobilenet_v2,
mobilenet_v3_small). Both sides prune torchvision-layout models (1000 classes, 3x224x224,
random weights) by the same rule: group magnitude importance (L1 or L2 of each coupled layer,
mean over the group, normalised by the group mean), ratio 0.3 and 0.5 of channels, local and
global, classifier output kept. Prints a markdown table: parameters, MACs, and seconds to build
the groups (fasterai: `Coupling::new`; Torch-Pruning: tracing the DependencyGraph inside
MetaPruner) and to prune (fasterai: the whole `prune_groups` call; Torch-Pruning: `step()`).
Needs torch, torchvision and torch-pruning (see BENCHMARKS.md for the venv).

With vit_b_16 in MODELS, the example prunes it by kind (heads, MLP units, head dims, embedding
width, heads + MLP; local L2) and this script does the same to timm's vit_base_patch16_224
(the same layout and parameter count) the way Torch-Pruning's ViT example does: MetaPruner with
`num_heads` per qkv layer, `prune_num_heads=True` and `head_pruning_ratio`, the attention's
`num_heads`/`head_dim`/`attn_dim` updated afterwards, and every group that is not being pruned
kept whole through `ignored_layers` (fc1 keeps the MLP width, qkv the heads, fc2 the
embedding width). Needs timm as well.
"""
import json
import subprocess
import sys
import time

import torch
import torch_pruning as tp
import torchvision


def torch_pruning(name, ratio, context, criterion):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)
    macs0, params0 = tp.utils.count_ops_and_params(model, x)
    head = model.fc if hasattr(model, "fc") else model.classifier[-1]
    imp = tp.importance.GroupMagnitudeImportance(p=1 if criterion == "l1" else 2,
                                                 group_reduction="mean", normalizer="mean")
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(model, x, importance=imp, pruning_ratio=ratio,
                                  global_pruning=context == "global", ignored_layers=[head])
    group_s = time.perf_counter() - start
    start = time.perf_counter()
    pruner.step()
    prune_s = time.perf_counter() - start
    macs, params = tp.utils.count_ops_and_params(model, x)
    with torch.no_grad():
        assert model(x).shape == (1, 1000)
    return dict(params_before=params0, params_after=params, macs_before=int(macs0),
                macs_after=int(macs), group_s=group_s, prune_s=prune_s)


def tp_vit(case, ratio):
    """Torch-Pruning on timm's ViT-B/16, removing the units of one `case` of the example."""
    import timm
    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224)
    macs0, params0 = tp.utils.count_ops_and_params(model, x)
    blocks = list(model.blocks)
    attn = [b.attn for b in blocks]
    keep = {  # layers whose output groups stay whole, per case
        "heads": [b.mlp.fc1 for b in blocks] + [b.mlp.fc2 for b in blocks],
        "mlp": [a.qkv for a in attn] + [b.mlp.fc2 for b in blocks],
        "head_dims": [b.mlp.fc1 for b in blocks] + [b.mlp.fc2 for b in blocks],
        "embed": [a.qkv for a in attn] + [b.mlp.fc1 for b in blocks],
        "heads+mlp": [b.mlp.fc2 for b in blocks],
    }[case]
    heads = case in ("heads", "heads+mlp")
    imp = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer="mean")
    start = time.perf_counter()
    # Torch-Pruning enters its pruning loop only for a non-zero width ratio: with heads alone
    # the qkv group gets one, and prune_head_dims=False keeps the dims whole.
    pruner = tp.pruner.MetaPruner(
        model, x, importance=imp, pruning_ratio=ratio, ignored_layers=[model.head] + keep,
        num_heads={a.qkv: a.num_heads for a in attn}, prune_num_heads=heads,
        prune_head_dims=not heads, head_pruning_ratio=ratio if heads else 0.0)
    group_s = time.perf_counter() - start
    start = time.perf_counter()
    pruner.step()
    prune_s = time.perf_counter() - start
    for a in attn:
        a.num_heads = pruner.num_heads[a.qkv]
        a.head_dim = a.qkv.out_features // (3 * a.num_heads)
        a.attn_dim = a.num_heads * a.head_dim
    macs, params = tp.utils.count_ops_and_params(model, x)
    with torch.no_grad():
        assert model(x).shape == (1, 1000)
    return dict(params_before=params0, params_after=params, macs_before=int(macs0),
                macs_after=int(macs), group_s=group_s, prune_s=prune_s,
                heads=[a.num_heads for a in attn])


def vit_rows(lines):
    print("| case | ratio | params: fasterai / TP | MACs, each side's counter: fasterai / TP "
          "| heads per block (TP) | groups s: fasterai / TP | prune s: fasterai / TP |")
    print("|---|---|---|---|---|---|---|")
    for r in lines:
        t = tp_vit(r["case"], r["ratio"])
        assert t["params_before"] == r["params_before"], (r, t)
        m = lambda v: f"{v / 1e6:.2f} M"
        g = lambda v: f"{v / 1e9:.2f} G"
        same = "=" if t["params_after"] == r["params_after"] else "≠"
        print(f"| {r['case']} | {r['ratio']} "
              f"| {m(r['params_after'])} {same} {m(t['params_after'])} (of {m(r['params_before'])}) "
              f"| {g(r['macs_after'])} / {g(t['macs_after'])} (of {g(r['macs_before'])} / {g(t['macs_before'])}) "
              f"| {min(t['heads'])}–{max(t['heads'])} "
              f"| {r['group_s']:.4f} / {t['group_s']:.3f} | {r['prune_s']:.3f} / {t['prune_s']:.3f} |",
              flush=True)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    models = sys.argv[2] if len(sys.argv) == 3 else "resnet18,resnet50,mobilenet_v2,mobilenet_v3_small"
    ours = subprocess.run([sys.argv[1], models], check=True, capture_output=True, text=True).stdout
    from importlib.metadata import version
    print(f"torch {torch.__version__}, torch-pruning {version('torch-pruning')}, "
          f"{torch.get_num_threads()} threads\n")
    lines = [json.loads(line) for line in ours.splitlines()]
    vit = [r for r in lines if "case" in r]
    if vit:
        vit_rows(vit)
        print()
    cnn = [r for r in lines if "case" not in r]
    if not cnn:
        return
    print("| model | ratio | context | crit. | params: fasterai / TP | MACs: fasterai / TP "
          "| groups s: fasterai / TP | prune s: fasterai / TP |")
    print("|---|---|---|---|---|---|---|---|")
    for r in cnn:
        t = torch_pruning(r["model"], r["ratio"], r["context"], r["criterion"])
        assert t["params_before"] == r["params_before"], (r, t)
        m = lambda v: f"{v / 1e6:.1f} M"
        print(f"| {r['model']} | {r['ratio']} | {r['context']} | {r['criterion']} "
              f"| {m(r['params_after'])} / {m(t['params_after'])} (of {m(r['params_before'])}) "
              f"| {m(r['macs_after'])} / {m(t['macs_after'])} (of {m(r['macs_before'])}) "
              f"| {r['group_s']:.4f} / {t['group_s']:.3f} | {r['prune_s']:.3f} / {t['prune_s']:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
