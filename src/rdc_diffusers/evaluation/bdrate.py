"""Bjøntegaard delta rate (BD-rate) between rate-distortion curves, with the ``bjontegaard`` package.

BD-rate is the average difference in log-rate between two curves over the quality range both cover, as a
percentage: -10 % means the test codec needs 10 % fewer bits than the anchor for the same quality.
The interpolation is piecewise cubic Hermite (``pchip``), the method of the current VCEG/JVET reference
(``bjontegaard.bd_rate(..., method="pchip")``).

Quality must grow along the curve, so LPIPS (lower is better) enters as ``-LPIPS``: "LPIPS BD-rate" is the
rate saving at equal LPIPS. A curve needs at least two points with distinct quality values; otherwise, or when
the curves' quality ranges do not overlap, the BD-rate is NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from .results import curves, merged_curves, number

METRICS = {"psnr": 1.0, "lpips": -1.0, "ms_ssim": 1.0}
"""Metrics BD-rate is defined for here, with the sign that makes "higher is better" (LPIPS is negated)."""

TIES = {"psnr": 0.005, "lpips": 5e-5, "ms_ssim": 5e-5}
"""Differences :func:`compare_to_baseline` counts as equal: half the last digit the tables print. A byte-identical
decode run again moves mean PSNR by up to 1e-4 dB and LPIPS by ~1e-6 (float sums in another order)."""

__all__ = ["METRICS", "TIES", "bd_rate", "bd_rate_table", "compare_to_baseline", "is_classical_curve", "metric_at_rate"]


def _clean(points: Sequence[tuple[float, float]], sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Finite, positive-rate points sorted by (signed) quality, one per quality value."""
    by_quality: dict[float, float] = {}
    for rate, quality in points:
        rate, quality = float(rate), float(quality) * sign
        if math.isfinite(rate) and rate > 0 and math.isfinite(quality):
            by_quality.setdefault(quality, rate)
    qualities = np.array(sorted(by_quality))
    return np.array([by_quality[q] for q in qualities]), qualities


def bd_rate(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]], metric: str = "psnr") -> float:
    """BD-rate in percent of ``test`` against ``anchor``, each a sequence of ``(bpp, metric value)`` points.

    ``metric`` names the quality measure (see :data:`METRICS`; ``"lpips"`` values are given as they are, lower
    is better, and negated here). Returns NaN when a curve has fewer than two usable points or the curves'
    quality ranges do not overlap.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    try:
        import bjontegaard
    except ImportError as err:
        raise ImportError('BD-rate needs: pip install "rdc-diffusers[metrics]" (bjontegaard)') from err

    rate_a, quality_a = _clean(anchor, METRICS[metric])
    rate_t, quality_t = _clean(test, METRICS[metric])
    if len(rate_a) < 2 or len(rate_t) < 2:
        return math.nan
    if min(quality_a.max(), quality_t.max()) <= max(quality_a.min(), quality_t.min()):
        return math.nan
    with warnings.catch_warnings():  # "insufficient overlap" is the caller's to judge from the curves
        warnings.simplefilter("ignore")
        value = bjontegaard.bd_rate(rate_a, quality_a, rate_t, quality_t, method="pchip",
                                    require_matching_points=False, min_overlap=0)
    return float(value)


def bd_rate_table(results: Sequence[dict], metrics: Sequence[str] = ("psnr", "lpips")) -> list[dict]:
    """BD-rates of every curve against every other curve of the loaded result files (see :func:`merged_curves`:
    one curve's points may come from several files).

    Returns one row per ordered pair (anchor curve, test curve): ``{"anchor", "test", "anchor_points",
    "test_points", "bdrate_psnr", "bdrate_lpips"}`` (percent; NaN where undefined). Curves with one point are
    skipped.
    """
    found = {name: entries for name, entries in merged_curves(results).items() if len(entries) >= 2}
    rows = []
    for anchor_name, anchor in found.items():
        for test_name, test in found.items():
            if anchor_name == test_name:
                continue
            row = {"anchor": anchor_name, "test": test_name, "anchor_points": len(anchor), "test_points": len(test)}
            for metric in metrics:
                row[f"bdrate_{metric}"] = bd_rate(
                    [(number(e.get("bpp")), number(e.get(metric))) for e in anchor],
                    [(number(e.get("bpp")), number(e.get(metric))) for e in test], metric)
            rows.append(row)
    return rows


def metric_at_rate(curve: Sequence[tuple[float, float]], bpp: float) -> float:
    """A curve's metric value at the rate ``bpp``, from its ``(bpp, value)`` points: linear in log-rate between the
    two neighbouring points (the rate axis BD-rate uses). NaN outside the curve's rate range (never extrapolated)
    or with fewer than two usable points."""
    by_rate: dict[float, float] = {}
    for rate, value in curve:
        rate, value = float(rate), float(value)
        if math.isfinite(rate) and rate > 0 and math.isfinite(value):
            by_rate.setdefault(rate, value)
    rates = sorted(by_rate)
    if len(rates) < 2 or not math.isfinite(bpp):
        return math.nan
    # an end's rate re-averaged over the same images in another order may come back an ulp outside the curve, and the
    # same codec on another CPU can code an image a few bytes apart (its entropy parameters come from float maths):
    # within 0.01 % of an end is that end
    bpp = next((end for end in (rates[0], rates[-1]) if math.isclose(bpp, end, rel_tol=1e-4)), bpp)
    if not rates[0] <= bpp <= rates[-1]:
        return math.nan
    return float(np.interp(math.log(bpp), np.log(rates), [by_rate[r] for r in rates]))


def is_classical_curve(entries: Sequence[dict]) -> bool:
    """Whether a curve's summary entries are a classical codec's (they carry the ``target_bpp`` they were coded to)."""
    return all("target_bpp" in e for e in entries)


def compare_to_baseline(results: dict, baseline: dict, metrics: Sequence[str] = ("psnr", "lpips")) -> list[dict]:
    """Each model curve of ``results`` against the baseline file's model curve of the same decode kind.

    Curves pair by their last part (``rdc-bsds/fast`` with the baseline's ``*/fast``, ``*/refined`` with
    ``*/refined``); classical codecs are left out. Per pair: the BD-rates (percent, test = ``results``, anchor =
    ``baseline``; negative = fewer bits) and, for every baseline point, the test curve's value at that point's
    rate (:func:`metric_at_rate`) and the difference, so "no rate gets worse" is checked point by point:
    ``{"test", "anchor", "test_points", "anchor_points", "bdrate_<metric>", "points": [{"key", "bpp", "<metric>",
    "test_<metric>", "delta_<metric>"}], "worse": [keys where a metric is worse], "uncovered": [keys outside the
    test curve's rates]}``. LPIPS is worse when it is higher, and a metric only when by more than :data:`TIES`.
    """
    from .results import group_name

    def model_curves(result: dict) -> dict[str, list[dict]]:
        return {name: entries for name, entries in curves(result).items() if not is_classical_curve(entries)}

    rows = []
    anchors = model_curves(baseline)
    for test_name, test in model_curves(results).items():
        for anchor_name, anchor in anchors.items():
            if anchor_name.rsplit("/", 1)[-1] != test_name.rsplit("/", 1)[-1]:
                continue
            row: dict = {"test": test_name, "anchor": anchor_name, "test_points": len(test),
                         "anchor_points": len(anchor)}
            for metric in metrics:
                row[f"bdrate_{metric}"] = bd_rate(
                    [(number(e.get("bpp")), number(e.get(metric))) for e in anchor],
                    [(number(e.get("bpp")), number(e.get(metric))) for e in test], metric)
            row["points"], row["worse"], row["uncovered"] = [], [], []
            for entry in anchor:
                bpp = number(entry.get("bpp"))
                point = {"key": group_name(entry), "bpp": bpp}
                for metric in metrics:
                    value = number(entry.get(metric))
                    at_rate = metric_at_rate([(number(e.get("bpp")), number(e.get(metric))) for e in test], bpp)
                    point |= {metric: value, f"test_{metric}": at_rate, f"delta_{metric}": at_rate - value}
                deltas = {m: point[f"delta_{m}"] * METRICS[m] for m in metrics}
                if any(math.isnan(d) for d in deltas.values()):
                    row["uncovered"].append(point["key"])
                elif any(d < -TIES[m] for m, d in deltas.items()):
                    row["worse"].append(point["key"])
                row["points"].append(point)
            rows.append(row)
    return rows
