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


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    models = sys.argv[2] if len(sys.argv) == 3 else "resnet18,resnet50,mobilenet_v2,mobilenet_v3_small"
    ours = subprocess.run([sys.argv[1], models], check=True, capture_output=True, text=True).stdout
    print(f"torch {torch.__version__}, torch-pruning {tp.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | ratio | context | crit. | params: fasterai / TP | MACs: fasterai / TP "
          "| groups s: fasterai / TP | prune s: fasterai / TP |")
    print("|---|---|---|---|---|---|---|---|")
    for line in ours.splitlines():
        r = json.loads(line)
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
