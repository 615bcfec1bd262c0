"""Which rung of a refiner ladder decides its LPIPS BD-rate: each refined point's LPIPS lowered by 5 % in turn, the
change of the BD-rate against the plain decode printed per rung (negative = that rung's gain moves the BD-rate).

    python benchmarks/results/refiner/bd_sensitivity.py benchmarks/results/refiner_bsds/refiner.json ...
"""

import json
import sys

sys.path.insert(0, "benchmarks")
from refiner import comparisons  # noqa: E402  (benchmarks/refiner.py: the table its refiner.md is written from)

from rdc_diffusers.evaluation.bdrate import bd_rate  # noqa: E402

for path in sys.argv[1:]:
    for base, table in comparisons(json.load(open(path))["summary"], ["jpeg", "webp", "avif"]).items():
        rows = table["points"]
        anchor = [(r["bpp"], r["lpips_plain"]) for r in rows]
        changes = []
        for i, row in enumerate(rows):
            test = [(r["bpp"], r["lpips_refined"] * (0.95 if j == i else 1.0)) for j, r in enumerate(rows)]
            changes.append(f"q{row['quality']:g} {bd_rate(anchor, test, 'lpips') - table['lpips_bd_rate']:+.2f}")
        print(f"{path}: {base} {table['lpips_bd_rate']:+.2f} %; LPIPS -5 % at " + ", ".join(changes))
