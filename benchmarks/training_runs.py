"""Codec training runs compared by their validation curves: the learning-rate comparison and the variable- vs
single-rate comparison of issue 11.

    python benchmarks/training_runs.py --runs LABEL=RUN_DIR_OR_LOG [LABEL=... ...] --out DIR [--title TEXT]
        [--until STEP]

Each run's ``train_log.jsonl`` (``examples/train_rdc.py codec``) holds validations on real bytes: ``(bpp, PSNR)``
of the 4 BSDS-test crops at qualities 10, 50 and 90, or at the one ``--fixed-quality`` of a single-rate run. The
first run is the reference. At every step all runs validated at, each other run is compared with the reference at
that step: by BD-rate over the three qualities (PCHIP, as ``rdc_diffusers.evaluation.bdrate``), and for a
single-rate run by the rate the reference curve needs for that run's PSNR (log-rate interpolation between its
points: the same measure at one point). Negative: fewer bits than the reference for the same PSNR. Writes
``runs.json`` (every validation record and the comparisons) and ``runs.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np

from rdc_diffusers.evaluation.bdrate import bd_rate


def validations(path: Path) -> dict[int, dict[float, tuple[float, float]]]:
    """``{step: {quality: (bpp, psnr)}}`` from a run folder or its ``train_log.jsonl``; a resumed run's later
    record of a step wins."""
    log = path / "train_log.jsonl" if path.is_dir() else path
    steps: dict[int, dict[float, tuple[float, float]]] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        points = {float(key[len("val_bpp_q"):]): (record[key], record[f"val_psnr_q{key[len('val_bpp_q'):]}"])
                  for key in record if key.startswith("val_bpp_q")}
        if points:
            steps[record["step"]] = points
    if not steps:
        raise SystemExit(f"{log} has no validation records")
    return steps


def rate_difference(reference: list[tuple[float, float]], test: list[tuple[float, float]]) -> float:
    """Percent more bits ``test`` spends than ``reference`` for the same PSNR: BD-rate for curves, the
    reference's interpolated rate at the PSNR of a one-point ``test``; NaN outside the reference's range."""
    if len(test) > 1:
        return bd_rate(reference, test)
    bpp, quality = test[0]
    points = sorted(reference, key=lambda point: point[1])
    psnrs = [point[1] for point in points]
    if not psnrs[0] <= quality <= psnrs[-1]:
        return math.nan
    reference_bpp = math.exp(np.interp(quality, psnrs, [math.log(point[0]) for point in points]))
    return 100 * (bpp / reference_bpp - 1)


def compare(runs: dict[str, dict[int, dict[float, tuple[float, float]]]]) -> list[dict]:
    """One row per shared validation step, and one for the runs' last validations when these differ in step:
    every run's points and its rate difference to the first run."""
    shared = sorted(set.intersection(*(set(steps) for steps in runs.values())))
    picks = [(str(step), {label: step for label in runs}) for step in shared]
    last = {label: max(steps) for label, steps in runs.items()}
    if len(set(last.values())) > 1:
        picks.append(("last (" + " / ".join(map(str, last.values())) + ")", last))
    reference_label, *others = runs
    rows = []
    for name, steps in picks:
        reference = list(runs[reference_label][steps[reference_label]].values())
        rows.append({"step": name, "points": {label: runs[label][steps[label]] for label in runs},
                     "rate_difference": {label: rate_difference(reference, list(runs[label][steps[label]].values()))
                                         for label in others}})
    return rows


def markdown(title: str, runs: dict, rows: list[dict], sources: dict[str, str], command: str) -> str:
    reference, *others = runs
    lines = [f"# {title}", "", f"Command: `{command}`", "",
             "Runs: " + "; ".join(f"**{label}** `{sources[label]}`" for label in runs) + ".", "",
             f"Validation on real bytes (4 BSDS-test 256² crops), `bpp / PSNR dB` at each quality; the last columns: "
             f"percent bits against **{reference}** for the same PSNR (BD-rate; at one point, the reference's "
             "interpolated rate).", ""]
    header = ["step"] + [f"{label} q{quality:g}" for label in runs for quality in rows[0]["points"][label]]
    header += [f"{label} vs {reference}" for label in others]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["step"]]
        for label in runs:
            cells += [f"{bpp:.4f} / {psnr:.2f}" for bpp, psnr in row["points"][label].values()]
        cells += ["-" if math.isnan(value) else f"{value:+.2f} %" for value in row["rate_difference"].values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, metavar="LABEL=PATH")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="Codec training runs")
    parser.add_argument("--until", type=int, default=None,
                        help="leave out validations after this step (e.g. where the runs' schedules part)")
    args = parser.parse_args(argv)
    sources = dict(run.split("=", 1) for run in args.runs)
    if len(sources) < 2:
        raise SystemExit("give at least two runs, the reference first")
    runs = {label: {step: points for step, points in validations(Path(path)).items()
                    if args.until is None or step <= args.until} for label, path in sources.items()}
    rows = compare(runs)
    command = "python benchmarks/training_runs.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(
        {"command": command, "sources": sources, "comparisons": rows,
         "validations": {label: {str(step): {f"{q:g}": point for q, point in points.items()}
                                 for step, points in steps.items()} for label, steps in runs.items()}},
        indent=1) + "\n")
    (out / "runs.md").write_text(markdown(args.title, runs, rows, sources, command))
    print((out / "runs.md").read_text())


if __name__ == "__main__":
    main()
