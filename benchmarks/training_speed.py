"""Seconds per codec training iteration: float32 and bfloat16 mixed precision, each eager and with torch.compile.

    python benchmarks/training_speed.py [--model rdc-bsds] [--iterations 12] [--threads 1]
        [--out benchmarks/results/training_speed]

Each setting runs in a fresh process on ``--threads`` threads (the campaign's one): ``train_rdc.py``'s own codec
step (``codec_optimizers``, ``codec_update``: forward, rate–distortion loss, clipped Adam step, aux step) on 4 × 256²
crops of ``--train-dir`` at random qualities, starting from ``--model``'s codec. torch.compile is accelerate's
(``ACCELERATE_DYNAMO_BACKEND=inductor``, no code of ours): its first iterations compile and are reported apart. The
settings run one after another, twice, in alternating order, so a load that comes and goes hits all of them; the
report gives each one's median over both rounds, and the loss of the first (same-seed) batch, which shows the
settings compute the same thing. Which is fastest depends on the CPU (bfloat16 pays off only with AVX-512 BF16 or
AMX), so the report names it. Writes ``training_speed.json`` and ``training_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"float32": ("no", "no"), "float32 + torch.compile": ("no", "inductor"), "bfloat16": ("bf16", "no"),
            "bfloat16 + torch.compile": ("bf16", "inductor")}
"""Name: (accelerate's mixed_precision, its dynamo backend)."""
WARMUP = 3
"""Iterations not timed: compilation (and the allocator's first passes) happen there."""

CHILD = """
import importlib.util, json, sys, time
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from rdc_diffusers import RDCPipeline
from rdc_diffusers.models.codec import MAX_QUALITY
from rdc_diffusers.training import ImageFolderDataset, rate_distortion_loss

model, train_dir, mixed_precision, iterations, warmup = sys.argv[1:6]
spec = importlib.util.spec_from_file_location("train_rdc", sys.argv[6])
train_rdc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_rdc)
set_seed(0)
accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision)
codec = RDCPipeline.from_pretrained(model).codec.float().train()
args = type("Args", (), {"lr": 1e-5, "gain_lr": 1e-5, "aux_lr": 1e-5})
net_params, optimizer, aux_optimizer = train_rdc.codec_optimizers(codec, args)
loader = torch.utils.data.DataLoader(ImageFolderDataset(train_dir, 256), batch_size=4, shuffle=True)
codec, optimizer, aux_optimizer, loader = accelerator.prepare(codec, optimizer, aux_optimizer, loader)
model = accelerator.unwrap_model(codec)
batches = iter(loader)
times, losses = [], []
for _ in range(int(warmup) + int(iterations)):
    x = next(batches)
    quality = torch.rand(x.shape[0]) * MAX_QUALITY
    start = time.perf_counter()
    out = codec(x, quality)
    loss = rate_distortion_loss(out["likelihoods"], out["x_init"], x, model.lmbda(quality))["loss"]
    train_rdc.codec_update(accelerator, codec, loss, net_params, optimizer, aux_optimizer)
    times.append(time.perf_counter() - start)
    losses.append(loss.item())
print(json.dumps({"times": times, "first_loss": losses[0]}))
"""


def cpu() -> str:
    """The CPU's model name and its bfloat16 instructions, from /proc/cpuinfo (Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return f"{name}, {os.cpu_count()} cores, bfloat16 instructions: {', '.join(bf16) or 'none'}"


def run(setting: str, args: argparse.Namespace) -> dict:
    mixed_precision, backend = SETTINGS[setting]
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads), "ACCELERATE_DYNAMO_BACKEND": backend,
                        "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, args.model, str(args.train_dir), mixed_precision, str(args.iterations),
         str(WARMUP), str(ROOT / "examples" / "train_rdc.py")],
        env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{setting} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="rdc-bsds")
    parser.add_argument("--train-dir", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training_speed")
    args = parser.parse_args()

    names = list(SETTINGS)
    rounds = {name: [] for name in names}
    for order in (names, names[::-1]):
        for name in order:
            rounds[name].append(run(name, args))
            print(name, f"{statistics.median(rounds[name][-1]['times'][WARMUP:]):.2f} s", flush=True)
    report = {"command": "python benchmarks/" + Path(__file__).name + " " + " ".join(sys.argv[1:]),
              "threads": args.threads, "batch": "4 x 256^2", "cpu": cpu(), "settings": {}}
    reference = None
    for name in names:
        timed = [t for r in rounds[name] for t in r["times"][WARMUP:]]
        median = statistics.median(timed)
        reference = reference or median
        report["settings"][name] = {
            "median_s": round(median, 3), "speedup": round(reference / median, 2),
            "warmup_s": [round(sum(r["times"][:WARMUP]), 1) for r in rounds[name]],
            "first_loss": [r["first_loss"] for r in rounds[name]]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Codec training iteration time", "", f"Command: `{report['command']}`; {report['cpu']}; "
             f"{args.threads} thread(s), "
             f"batch {report['batch']}, {args.iterations} timed iterations per run, two runs per setting "
             "(alternating order).", "",
             "| setting | median s / iteration | speed-up vs float32 | first 3 iterations (s, per run) | "
             "loss of the first batch |", "|---|---|---|---|---|"]
    for name, row in report["settings"].items():
        lines.append(f"| {name} | {row['median_s']:.2f} | {row['speedup']:.2f}x | "
                     f"{', '.join(map(str, row['warmup_s']))} | {row['first_loss'][0]:.4f} |")
    (args.out / "training_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
