"""Start-up time of `import rdc_diffusers` and of the `rdc` commands that code nothing (issue 16, "fast start").

    python benchmarks/startup.py [--runs 5] [--model rdc-bsds] [--target 1.5] [--out benchmarks/results/startup]

Each command runs ``--runs`` times in a fresh process (what a user pays on every call); the report gives the median
and the max wall time, against ``--target`` seconds. ``python -c pass`` (the interpreter) and
``python -c "import torch"`` are measured alongside as floors, since on a shared machine every number moves with
the load. A last run of each command records which heavy packages it left in ``sys.modules``: ``rdc --help``,
``rdc info`` and ``rdc --version`` need none of them. ``rdc info`` reads a small ``.rdc`` file this script
first compresses with ``--model``. Writes ``startup.json`` and ``startup.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "PIL", "torch", "torchvision", "scipy", "pandas", "diffusers", "compressai", "torch_geometric",
         "transformers")
"""Packages whose import costs from ~0.1 s (numpy) to several seconds (torch, compressai's torch_geometric)."""
MARK = "@@startup-modules@@"

PROBE = f"""
import json, sys
argv = sys.argv[1:]
if argv[0] == "-c":
    exec(argv[1])
else:
    from rdc_diffusers.cli import main
    try:
        main(argv)
    except SystemExit:
        pass
print({MARK!r} + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
"""Runs a ``-c`` snippet or an ``rdc`` command line in-process, then prints the heavy packages it imported."""


def rdc_command() -> list[str]:
    """The installed ``rdc`` console script, else the module (same code, one ``runpy`` more)."""
    script = Path(sys.executable).parent / "rdc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rdc_diffusers.cli"]


def make_rdc(folder: Path, model: str) -> Path:
    """A 64x64 gradient compressed by ``model``: a real file header for ``rdc info`` to parse."""
    import numpy as np
    from PIL import Image

    from rdc_diffusers import RDCPipeline

    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    image = Image.fromarray(np.stack([np.add.outer(ramp, ramp) // 2, np.tile(ramp, (64, 1)),
                                      np.tile(ramp[:, None], (1, 64))], axis=-1).astype(np.uint8))
    path = folder / "small.rdc"
    path.write_bytes(RDCPipeline.from_pretrained(model).compress(image))
    return path


def time_runs(command: list[str], runs: int, env: dict[str, str]) -> dict:
    """Wall seconds of ``runs`` fresh processes; a failing command is reported, not timed as a success."""
    seconds, codes, error = [], set(), []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        seconds.append(time.perf_counter() - start)
        codes.add(done.returncode)
        if done.returncode != 0:
            error = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
    result = {"median_s": statistics.median(seconds), "max_s": max(seconds), "seconds": seconds,
              "exit_codes": sorted(codes)}
    if codes != {0}:
        result["error"] = error[0] if error else ""
    return result


def imported(argv: list[str], env: dict[str, str]) -> list[str] | None:
    """The heavy packages in ``sys.modules`` after running ``argv`` (``-c CODE`` or an ``rdc`` command line)."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    return json.loads(lines[-1][len(MARK):]) if lines else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command")
    parser.add_argument("--model", default="rdc-bsds", help="the model that compresses the file for `rdc info`")
    parser.add_argument("--target", type=float, default=1.5, help="seconds: the goal for the light commands")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/startup")
    args = parser.parse_args(argv)

    # the child processes find the package as the user's shell would, plus src/ for an uninstalled checkout
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                    os.environ.get("PYTHONPATH")]))}
    rdc = rdc_command()
    with tempfile.TemporaryDirectory() as tmp:
        rdc_file = make_rdc(Path(tmp), args.model)
        cases = {  # name: (command line timed, what the module probe runs, a reference floor?)
            "python -c pass": ([sys.executable, "-c", "pass"], ["-c", "pass"], True),
            "python -c 'import torch'": ([sys.executable, "-c", "import torch"], ["-c", "import torch"], True),
            "python -c 'import rdc_diffusers'": ([sys.executable, "-c", "import rdc_diffusers"],
                                                 ["-c", "import rdc_diffusers"], False),
            "rdc --help": ([*rdc, "--help"], ["--help"], False),
            "rdc --version": ([*rdc, "--version"], ["--version"], False),
            "rdc info small.rdc": ([*rdc, "info", str(rdc_file)], ["info", str(rdc_file)], False),
        }
        rows = []
        for name, (command, probe, floor) in cases.items():
            row = {"command": name, "floor": floor, **time_runs(command, args.runs, env),
                   "heavy_modules": imported(probe, env)}
            row["meets_target"] = None if floor else row["median_s"] < args.target and row["exit_codes"] == [0]
            rows.append(row)
            print(f"{name:34s} median {row['median_s']:.2f} s, max {row['max_s']:.2f} s, "
                  f"heavy: {', '.join(row['heavy_modules'] or []) or '-'}", flush=True)

    report = {
        "info": {"runs": args.runs, "target_s": args.target, "model": args.model, "python": sys.version.split()[0],
                 "cpus": os.cpu_count(), "load_average_1_5_15": list(os.getloadavg()),
                 "rdc": shutil.which("rdc") or " ".join(rdc), "command": " ".join(["python", *sys.argv])},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(report, indent=2) + "\n")
    load = ", ".join(f"{x:.1f}" for x in report["info"]["load_average_1_5_15"])
    lines = [f"# Start-up time: median of {args.runs} fresh processes", "",
             f"Command: `{report['info']['command']}`; {report['info']['cpus']} CPUs, load average {load} "
             f"(1, 5, 15 min) when it ended. Target for the light commands: under {args.target:g} s. "
             f"The first two rows are floors: the interpreter alone, and `import torch`.", "",
             "| command | median s | max s | < target | heavy modules imported |", "|---|---|---|---|---|"]
    for row in rows:
        ok = "floor" if row["floor"] else ("yes" if row["meets_target"] else "**no**")
        if row["exit_codes"] != [0]:
            ok += f" (exit {row['exit_codes']}: {row.get('error', '')})"
        heavy = "?" if row["heavy_modules"] is None else ", ".join(row["heavy_modules"]) or "none"
        lines.append(f"| `{row['command']}` | {row['median_s']:.2f} | {row['max_s']:.2f} | {ok} | {heavy} |")
    (args.out / "startup.md").write_text("\n".join(lines) + "\n")
    return report


if __name__ == "__main__":
    main()
