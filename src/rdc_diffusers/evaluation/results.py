"""Result files: what `rdc eval` and `benchmarks/run.py` write, and what `rdc bdrate` / `rdc plot` read.

One JSON file (strict JSON: NaN is ``null``, infinities are the strings ``"inf"``/``"-inf"``) and a CSV beside it::

    {
      "info":    {"date", "command", "device", "torch", ...},            # how and where it was made
      "summary": {"<method>/<decode>[@q<quality>]": {
                     "method", "decode", "quality", "curve", "count", "bpp", "psnr", "ms_ssim", "lpips", "fid",
                     "kid", "kid_std", "patches", "encode_s", "decode_s", "median_encode_s", "median_decode_s", ...
                  }},                                                            # means over images
      "records": [{"image", "method", "decode", "quality", "bpp", "psnr", ..., "patches", ...}]  # per image, point
    }

The CSV has one row per record, then one row per summary entry with ``image`` = ``"mean"``. Summary keys are
:func:`group_name` (a variable-rate model's point carries its quality: ``rdc-bsds/fast@q25``),
``curve`` is :func:`curve_name`; benchmarks/run.py documents every field.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
import re
import shlex
import statistics
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from ..errors import ResultsFileError

__all__ = ["curve_name", "curves", "format_quality", "group_name", "is_model_point", "json_safe", "load_results",
           "machine_info", "merged_curves", "number", "on_images", "public_record", "save_results", "summarize"]

def json_safe(value):
    """Strict JSON: NaN becomes null, infinities the strings "inf" / "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _from_json(value):
    """Undo :func:`json_safe` for infinities ("inf" -> inf); null stays None (a missing value)."""
    return float(value) if value in ("inf", "-inf") else value


def number(value) -> float:
    """A summary value as a float: None (NaN in the file) and non-numbers become NaN."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return math.nan


def curves(results: dict) -> dict[str, list[dict]]:
    """The summary entries of a result file grouped into rate-distortion curves, each sorted by bpp.

    The curve of an entry is its ``curve`` field, or :func:`curve_name` for files
    written before that field existed.
    """
    grouped: dict[str, list[dict]] = {}
    for entry in results["summary"].values():
        grouped.setdefault(curve_name(entry), []).append(entry)
    return {name: sorted(entries, key=lambda e: number(e.get("bpp"))) for name, entries in grouped.items()}


def merged_curves(results: Sequence[dict]) -> dict[str, list[dict]]:
    """The curves of several result files, for plots and BD-rates across files.

    Single points of one curve from different files join: ``rdc eval`` at one quality per run (or, before
    variable rates, once per single-rate model: ``rdc-bsds-q1``, ``-q3`` and ``-q5``) writes one point per file,
    and those files make one curve. A file that holds two or more points of a curve holds that curve as it was
    measured, so it is never mixed with points of other files; nor is a point measured twice (the same
    ``group_name`` in two files). Such a curve is kept apart, one curve per file, named ``"<curve> [<file number>]"``:
    two benchmark runs, e.g. today's variable-rate ``rdc-bsds/fast`` and the baseline's ``rdc-bsds/fast`` of the
    retired q1/q3/q5 models, are two curves ``rdc-bsds/fast [1]`` and ``rdc-bsds/fast [2]``.
    """
    per_file = [curves(result) for result in results]
    merged: dict[str, list[dict]] = {}
    for name in dict.fromkeys(name for file_curves in per_file for name in file_curves):
        parts = [(index, file_curves[name]) for index, file_curves in enumerate(per_file, 1) if name in file_curves]
        keys = [group_name(entry) for _, entries in parts for entry in entries]
        if len(parts) == 1 or (len(keys) == len(set(keys)) and all(len(entries) == 1 for _, entries in parts)):
            merged[name] = sorted((e for _, entries in parts for e in entries), key=lambda e: number(e.get("bpp")))
        else:
            merged |= {f"{name} [{index}]": entries for index, entries in parts}
    return merged


def on_images(results: dict, images: Collection[str]) -> dict:
    """A result file re-averaged over the records of ``images`` only (names, as in ``record["image"]``), so two
    runs on different image sets are compared on the images both measured.

    Returns ``results`` itself when its records are all of ``images``; otherwise ``{"info", "summary", "records"}``
    with the summary recomputed from the kept records (:func:`summarize`). FID/KID need
    the patch features, which files do not store, so re-averaged entries have none.
    """
    records = results.get("records") or []
    kept = [r for r in records if r.get("image") in images]
    if len(kept) == len(records):
        return results
    return {"info": results.get("info", {}), "summary": summarize(kept, fid=False), "records": kept}


def public_record(record: dict) -> dict:
    """A record without its private fields (``_*``, e.g. the patch features FID/KID are computed from)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def machine_info(device: str = "cpu") -> dict:
    """Date, command line, thread counts and library versions: what a reader needs to trust a timing."""
    import PIL
    import torch

    from .. import __version__

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "device": str(device),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pillow": PIL.__version__,
        "rdc_diffusers": __version__,
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def csv_path(json_path: str | Path) -> Path:
    """The CSV written beside a JSON result file (same name, ``.csv``)."""
    return Path(json_path).with_suffix(".csv")


def save_results(path: str | Path, records: Sequence[dict], summary: dict, info: dict, **extra) -> tuple[Path, Path]:
    """Write the JSON result file and its CSV; ``extra`` adds top-level keys (e.g. ``bdrate``, ``speed``).

    The caller decides about overwriting (the CLI refuses without ``--force``). Returns both paths.
    """
    path = Path(path)
    rows = [public_record(r) for r in records]
    document = {"info": info, "summary": summary, "records": rows, **extra}
    path.write_text(json.dumps(json_safe(document), indent=2, allow_nan=False) + "\n")
    means = [{"image": "mean", **entry} for entry in summary.values()]
    columns: list[str] = []
    for row in rows + means:
        columns += [k for k in row if k not in columns]
    table = csv_path(path)
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows + means:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path, table


def load_results(path: str | Path) -> dict:
    """Read a result file; infinities in ``summary`` come back as floats. Raises :class:`ResultsFileError`."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as err:
        raise ResultsFileError(f"{path}: cannot read ({err.strerror or err})") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsFileError(f"{path}: not a JSON result file ({err})") from err
    summary = document.get("summary") if isinstance(document, dict) else None
    if not isinstance(summary, dict) or not all(isinstance(e, dict) and {"method", "bpp"} <= e.keys()
                                                for e in summary.values()):
        raise ResultsFileError(f"{path}: not a result file (no 'summary' of entries with 'method' and 'bpp')")
    document["summary"] = {k: {f: _from_json(v) for f, v in e.items()} for k, e in summary.items()}
    return document


def format_quality(quality: float) -> str:
    """A model quality as written in summary keys and tables: ``25``, ``12.5``, ``33.33``."""
    return f"{float(quality):g}"


def is_model_point(record: dict) -> bool:
    """A record or summary entry of a variable-rate model: it has a codec ``quality`` and no ``target_bpp``.

    (Classical records carry ``quality`` too, Pillow's chosen one, but always with their ``target_bpp``; the
    single-rate models of result files written before variable rates carry no ``quality``.)
    """
    return "target_bpp" not in record and _is_number(record.get("quality"))


def curve_name(record: dict) -> str:
    """Which rate-distortion curve a record or summary entry belongs to (for BD-rates and plots).

    * A classical codec (a record with ``target_bpp``) is one curve per codec (``"jpeg"``).
    * A variable-rate model is one curve per model and decode, whatever the quality: every quality of
      ``rdc-bsds`` decoded ``fast`` is on ``rdc-bsds/fast``.
    * A single-rate model of older result files (no ``quality``) is one curve per model family and decode: a
      trailing ``-q<N>`` (the rate point) is dropped from the model name, so ``rdc-bsds-q1/fast``,
      ``rdc-bsds-q3/fast`` and ``rdc-bsds-q5/fast`` form the curve ``rdc-bsds/fast``.

    An explicit ``curve`` field wins (benchmarks/run.py names its refined curves ``<model>/refined``).
    """
    if record.get("curve"):
        return str(record["curve"])
    if "target_bpp" in record:
        return str(record["method"])
    family = str(record["method"]) if is_model_point(record) else re.sub(r"-q\d+$", "", str(record["method"]))
    return f"{family}/{record['decode']}" if record.get("decode") else family


def group_name(record: dict) -> str:
    """The key :func:`summarize` groups by, one rate point of one curve.

    ``"method/decode"`` (``"rdc-bsds-q3/fast"``, ``"jpeg/<=0.2500bpp"``), or ``"method"`` when there is no decode;
    a variable-rate model's point adds its quality: ``"rdc-bsds/fast@q25"``.
    """
    decode = record.get("decode")
    key = f"{record['method']}/{decode}" if decode else str(record["method"])
    return f"{key}@q{format_quality(record['quality'])}" if is_model_point(record) else key


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summarize(records: Sequence[dict], *, fid: bool = True) -> dict[str, dict]:
    """Per group (:func:`group_name`: one decode of one model at one quality, or one classical codec at one target
    rate; in order of first appearance): the mean of every numeric field.

    Each group's entry has ``method``, ``decode``, ``curve`` (:func:`curve_name`), ``count`` (the number of
    records, i.e. images), the mean of every numeric field (bools and strings are skipped; a string field equal
    across the group, like ``scheduler``, is copied), and ``median_encode_s`` / ``median_decode_s``. NaN values
    (MS-SSIM of images below 161 px, LPIPS without its packages) are left out of a mean; when that happens the
    entry also has ``<field>_count``, the number of values averaged (a mean of no values is NaN).

    ``patches`` is the group's total patch count, not a mean. When the records carry patch features and
    ``fid`` is true, the entry gets ``fid``, ``kid`` and ``kid_std`` over all the group's patches
    (:func:`rdc_diffusers.metrics.fid.fid_kid`; NaN below 2 patches). Private fields (``_*``) are not copied.
    """
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(group_name(record), []).append(record)
    summary = {}
    for key, items in groups.items():
        entry: dict = {"method": items[0]["method"], "decode": items[0].get("decode"),
                       "curve": curve_name(items[0]), "count": len(items)}
        fields = [k for k in items[0] if k not in entry and not k.startswith("_") and k != "patches"]
        for field in fields:
            values = [r.get(field) for r in items]
            if all(_is_number(v) for v in values):
                finite = [float(v) for v in values if not math.isnan(v)]
                entry[field] = statistics.fmean(finite) if finite else float("nan")
                if len(finite) < len(values):
                    entry[f"{field}_count"] = len(finite)
            elif all(isinstance(v, str) or v is None for v in values) and len(set(values)) == 1 and field != "image":
                entry[field] = values[0]
        for field in ("encode_s", "decode_s"):
            times = [r[field] for r in items if _is_number(r.get(field))]
            if times:
                entry[f"median_{field}"] = statistics.median(times)
        if any("patches" in r for r in items):
            entry["patches"] = sum(int(r.get("patches", 0)) for r in items)
        with_features = [r for r in items if "_fid_real" in r]
        if fid and with_features:
            import numpy as np
            import torch

            from ..metrics.fid import fid_kid

            real = torch.from_numpy(np.concatenate([r["_fid_real"] for r in with_features]))
            fake = torch.from_numpy(np.concatenate([r["_fid_fake"] for r in with_features]))
            scores = fid_kid(real, fake)
            entry.update(fid=scores["fid"], kid=scores["kid"], kid_std=scores["kid_std"])
        summary[key] = entry
    return summary
