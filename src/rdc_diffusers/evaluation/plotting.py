"""Rate-distortion charts from result files: every curve of every file on one chart per metric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .results import merged_curves, number

PLOTS = {"psnr": "PSNR (dB, higher is better)", "lpips": "LPIPS AlexNet (lower is better)"}
"""Metric -> y-axis label; one PNG ``rd_<metric>.png`` each."""

__all__ = ["PLOTS", "plot_files", "plot_rd"]


def _quality_label(entry: dict) -> str:
    """``"q25"`` for a point of a variable-rate model, ``""`` otherwise (classical codecs, single-rate models)."""
    from .results import format_quality, is_model_point

    return f"q{format_quality(entry['quality'])}" if is_model_point(entry) else ""


def plot_files(out_dir: str | Path, metrics: Sequence[str] = tuple(PLOTS)) -> list[Path]:
    """The PNG paths :func:`plot_rd` writes into ``out_dir`` (so a caller can check for existing files first)."""
    return [Path(out_dir) / f"rd_{metric}.png" for metric in metrics]


def plot_rd(results: Sequence[dict], out_dir: str | Path, metrics: Sequence[str] = tuple(PLOTS),
            title: str | None = None) -> list[Path]:
    """Write ``rd_psnr.png`` and ``rd_lpips.png`` (bpp on x) into ``out_dir``; returns the paths.

    ``results`` are loaded result files, their curves joined across files as :func:`merged_curves` does. A curve
    with one point is drawn as a marker; the points of a variable-rate model are labelled with their quality.
    """
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError('plots need matplotlib: pip install "rdc-diffusers[metrics]"') from err

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    unknown = [m for m in metrics if m not in PLOTS]
    if unknown:
        raise ValueError(f"metrics must be among {sorted(PLOTS)}, got {unknown}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    found = merged_curves(results)
    paths = []
    for metric, path in zip(metrics, plot_files(out_dir, metrics), strict=True):
        fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
        for name, entries in found.items():
            points = [(number(e.get("bpp")), number(e.get(metric)), _quality_label(e)) for e in entries]
            points = [(x, y, q) for x, y, q in points if x == x and y == y]  # drop NaN
            if not points:
                continue
            xs, ys, _ = zip(*points, strict=True)
            (line,) = ax.plot(xs, ys, marker="o", linestyle="-" if len(points) > 1 else "none", label=name)
            for x, y, label in points:
                if label:
                    ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                                color=line.get_color())
        ax.set_xlabel("bits per pixel (whole file)")
        ax.set_ylabel(PLOTS[metric])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
