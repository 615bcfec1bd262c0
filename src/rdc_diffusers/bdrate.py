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

from .results import merged_curves, number

METRICS = {"psnr": 1.0, "lpips": -1.0, "ms_ssim": 1.0}
"""Metrics BD-rate is defined for here, with the sign that makes "higher is better" (LPIPS is negated)."""

__all__ = ["METRICS", "bd_rate", "bd_rate_table"]


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
