"""Probe: is the refined decode's patch FID gap to AVIF at 0.48 and 0.97 bpp a gap in realism or in fidelity?
Reads the committed Kodak table and compares each curve's patch FID at the PSNR of each refined point (linear in
PSNR between a curve's neighbouring points, never extrapolated) instead of at equal rate.

    python benchmarks/results/unet_selection/session56/fid_at_equal_psnr/probe.py benchmarks/results/results.json \
        > benchmarks/results/unet_selection/session56/fid_at_equal_psnr/fid_at_equal_psnr.md
"""

import json
import sys

import numpy as np

summary = json.load(open(sys.argv[1]))["summary"]


def curve(name: str) -> list[dict]:
    return sorted((e for e in summary.values() if e["curve"] == name), key=lambda e: e["psnr"])


def fid_at_psnr(points: list[dict], psnr: float) -> float:
    psnrs = [e["psnr"] for e in points]
    if not psnrs[0] <= psnr <= psnrs[-1]:
        return float("nan")
    return float(np.interp(psnr, psnrs, [e["fid"] for e in points]))


print(f"# Patch FID at equal PSNR, from `{sys.argv[1]}`\n")
print("| refined point | bpp | PSNR dB | its FID | AVIF's FID at that PSNR | WebP's | JPEG's |")
print("|---|---|---|---|---|---|---|")
anchors = {name: curve(name) for name in ("avif", "webp", "jpeg")}
for e in curve("rdc-bsds/refined"):
    others = " | ".join(f"{fid_at_psnr(points, e['psnr']):.1f}" for points in anchors.values())
    print(f"| q{e['quality']:g} | {e['bpp']:.3f} | {e['psnr']:.2f} | {e['fid']:.1f} | {others} |")
print("\nnan: that PSNR is outside the anchor's measured range.")
