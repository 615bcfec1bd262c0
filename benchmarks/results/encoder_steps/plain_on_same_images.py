"""BD-rates of the shipped run (plain encoder, benchmarks/results/results.json) on the images of this run, for the
comparison in docs/training.md. From the repository root:

    PYTHONPATH=src python benchmarks/results/encoder_steps/plain_on_same_images.py > \\
        benchmarks/results/encoder_steps/plain_on_same_images.json
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
from run import on_images  # noqa: E402

from rdc_diffusers.evaluation.bdrate import bd_rate_table  # noqa: E402
from rdc_diffusers.evaluation.results import load_results  # noqa: E402

here = Path(__file__).parent
images = {r["image"] for r in json.loads((here / "results.json").read_text())["records"]}
plain = on_images(load_results("benchmarks/results/results.json"), images)
rows = [row for row in bd_rate_table([plain]) if row["test"].startswith("rdc-bsds")]
print(json.dumps({"images": sorted(images), "bdrate": rows}, indent=1))
