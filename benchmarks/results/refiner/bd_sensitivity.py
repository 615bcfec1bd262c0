"""Which rung of a refiner ladder decides its LPIPS BD-rate: each refined point's LPIPS lowered by 5 % in turn, the
change of the BD-rate against the plain decode printed per rung (negative = that rung's gain moves the BD-rate).

    python benchmarks/results/refiner/bd_sensitivity.py benchmarks/results/refiner_bsds/refiner.json ...
"""

import json
import sys

from rdc_diffusers.evaluation.bdrate import bd_rate

for path in sys.argv[1:]:
    summary = json.load(open(path))["summary"]
    for base in ("jpeg", "webp", "avif"):
        plain, refined = (sorted((v["quality"], v["bpp"], v["lpips"]) for v in summary.values()
                                 if v["curve"] == f"{base}/{decode}") for decode in ("plain", "refined"))
        anchor = [(b, lp) for _, b, lp in plain]
        base_bd = bd_rate(anchor, [(b, lp) for _, b, lp in refined], "lpips")
        changes = []
        for i in range(len(refined)):
            test = [(b, lp * (0.95 if j == i else 1.0)) for j, (_, b, lp) in enumerate(refined)]
            changes.append(f"q{refined[i][0]:g} {bd_rate(anchor, test, 'lpips') - base_bd:+.2f}")
        print(f"{path}: {base} {base_bd:+.2f} %; LPIPS -5 % at " + ", ".join(changes))
