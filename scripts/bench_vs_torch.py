"""Seed 004's chain on VGG16-bn (10 classes) in one run, as ratios: each `fasterai` CLI step
(a new process that reads and writes its model file) beside fasterai 0.4.1's in-memory call on
PyTorch plus the time to read and write that file at this disk's speed; then batch-1 inference
on flex (prepared for inference: fused convolutions, Winograd) beside PyTorch, before and
after BatchNorm folding.

Usage: bench_vs_torch.py CLI WORK_DIR [--before OLD_CLI] [--json OUT.json]
(run by `cargo xtask bench-vs-torch`; --before adds a column for another build of the CLI, so
that a change is measured against its predecessor in the same run). Both sides use the same
number of threads (BENCH_THREADS, default: all cores).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torchvision
from safetensors.torch import save_file

THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
torch.set_num_threads(THREADS)
ENV = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))


def seconds(work):
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def disk_seconds(path):
    """Reading `path` and writing as many bytes (flushed to disk), with plain Python I/O."""
    size = os.path.getsize(path)
    start = time.perf_counter()
    with open(path, "rb") as f:
        data = f.read()
    copy = path + ".io-probe"
    with open(copy, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    os.remove(copy)
    assert len(data) == size
    return elapsed


def cli(exe, *args):
    out = subprocess.run([exe, *args], env=ENV, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"`fasterai {' '.join(args)}` failed:\n{out.stderr}")
    return out.stdout


def fasterai_steps():
    """fasterai 0.4.1's calls for the same chain, in memory, on one model."""
    from fasterai.core.criteria import large_final
    from fasterai.misc.bn_folding import BN_Folder
    from fasterai.misc.fc_decomposer import FC_Decomposer
    from fasterai.prune.pruner import Pruner
    from fasterai.sparse.sparsifier import Sparsifier

    model = torchvision.models.vgg16_bn(num_classes=10)
    times = {}
    times["sparsify"], _ = seconds(
        lambda: Sparsifier(model, "filter", "local", large_final).sparsify_model(0.4)
    )
    # The zeroed filters have the smallest norms: a 40 % local prune removes exactly them.
    times["prune"], _ = seconds(
        lambda: Pruner(model, 0.4, "local", large_final).prune_model()
    )
    model.eval()
    times["fold"], folded = seconds(lambda: BN_Folder().fold(model))
    times["decompose --fc 0.5"], _ = seconds(
        lambda: FC_Decomposer().decompose(folded, percent_removed=0.5)
    )
    return times


def torch_latency(model, size, runs):
    model.eval()
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cli")
    parser.add_argument("work")
    parser.add_argument("--before")
    parser.add_argument("--json")
    args = parser.parse_args()
    exe, work = args.cli, args.work
    os.makedirs(work, exist_ok=True)
    path = lambda name: os.path.join(work, name)

    # The starting model, untimed: torchvision's VGG16-bn imported once.
    torch.manual_seed(0)
    base = torchvision.models.vgg16_bn(num_classes=10)
    save_file(base.state_dict(), path("torch.safetensors"))
    cli(exe, "import", "vgg16_bn", "--num-classes", "10", "--weights",
        path("torch.safetensors"), "-o", path("base.safetensors"), "--force")

    chain = [
        ("sparsify", "base", "sparse", ["sparsify", "--sparsity", "0.4", "--granularity",
                                         "filter", "--context", "local", "--criterion", "l1"]),
        ("prune", "sparse", "pruned", ["prune"]),
        ("fold", "pruned", "folded", ["fold"]),
        ("decompose --fc 0.5", "folded", "small", ["decompose", "--fc", "0.5"]),
    ]
    builds = [("ours", exe)] + ([("before", args.before)] if args.before else [])
    times = {name: {} for name, _ in builds}
    io = {}
    for step, src, dst, step_args in chain:
        command, *options = step_args
        for name, binary in builds:
            out = f"{dst}.{name}" if name != "ours" else dst
            times[name][step], _ = seconds(lambda: cli(
                binary, command, path(f"{src}.safetensors"), *options,
                "-o", path(f"{out}.safetensors"), "--force"))
        io[step] = disk_seconds(path(f"{src}.safetensors")) + disk_seconds(
            path(f"{dst}.safetensors"))
    ours = times["ours"]
    theirs = fasterai_steps()

    # Inference, like for like: the unpruned model, as is and with BatchNorm folded, each side.
    from fasterai.misc.bn_folding import BN_Folder

    cli(exe, "fold", path("base.safetensors"), "-o", path("base_folded.safetensors"), "--force")
    latency = []
    for size, runs in [(224, 10), (32, 30)]:
        for label, model_file in [("VGG16-bn", "base"), ("VGG16-bn folded", "base_folded")]:
            medians = [json.loads(cli(binary, "bench", path(f"{model_file}.safetensors"),
                                      "--input", f"3x{size}x{size}", "--runs", str(runs),
                                      "--json"))["median_ms"] for _, binary in builds]
            reference = torchvision.models.vgg16_bn(num_classes=10).eval()
            if model_file == "base_folded":
                reference = BN_Folder().fold(reference)
            latency.append((f"{label} {size}²", medians, torch_latency(reference, size, runs)))

    print(f"\n{THREADS} threads each; CLI steps include starting the process and reading and "
          "writing the model file.\n")
    before = times.get("before")
    print("| step | fasterai-rs CLI (s) | fasterai 0.4.1 in memory (s) | file I/O at disk speed (s) "
          "| ratio to in-memory + I/O |" + (" before (s) | ratio before |" if before else ""))
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if before else ""))
    rows = []
    for step, *_ in chain:
        anchor = theirs[step] + io[step]
        ratio = ours[step] / anchor
        row = {"step": step, "ours_s": ours[step], "fasterai_s": theirs[step], "io_s": io[step],
               "ratio": ratio}
        line = f"| `{step}` | {ours[step]:.2f} | {theirs[step]:.2f} | {io[step]:.2f} | {ratio:.2f}× |"
        if before:
            row["before_s"] = before[step]
            line += f" {before[step]:.2f} | {before[step] / anchor:.2f}× |"
        rows.append(row)
        print(line)
    print("\n| batch-1 inference | flex (ms) | PyTorch (ms) | ratio |"
          + (" before (ms) | ratio before |" if before else ""))
    print("|---|---:|---:|---:|" + ("---:|---:|" if before else ""))
    for label, medians, torch_ms in latency:
        line = f"| {label} | {medians[0]:.1f} | {torch_ms:.1f} | {medians[0] / torch_ms:.2f}× |"
        if before:
            line += f" {medians[1]:.1f} | {medians[1] / torch_ms:.2f}× |"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": THREADS, "steps": rows, "latency": [
                {"model": l, "flex_ms": m[0], "before_ms": m[1] if len(m) > 1 else None,
                 "torch_ms": b} for l, m, b in latency]}, f, indent=2)


if __name__ == "__main__":
    main()
