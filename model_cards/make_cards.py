"""Regenerate model_cards/<name>.md for every bundled model from the committed benchmark results.

    python model_cards/make_cards.py            # rewrite the cards (and delete cards of models no longer bundled)
    python model_cards/make_cards.py --check    # exit 1 if a committed card differs from a fresh rendering,
                                                # or a card has no bundled model

The numbers come only from benchmarks/results/*.json (summary entries whose ``method`` is the model's name: one
row per quality of the variable-rate model, fast and refined at its default steps), the training budget only from
the model's own training/ logs, so a card cannot drift from what was measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rdc_diffusers.hub.model_card import headline, load_summaries, render_card, select_results, training_budget
from rdc_diffusers.hub.pretrained import BUNDLED_DIR, bundled_models

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
CARDS_DIR = ROOT / "model_cards"


def render_bundled_card(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """The card of bundled model ``name``; raises MissingResultsError when it has not been benchmarked."""
    model_dir = BUNDLED_DIR / name
    config = json.loads((model_dir / "model_index.json").read_text())
    scheduler = json.loads((model_dir / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
    points = select_results(load_summaries(results_dir.glob("*.json")), name, scheduler,
                            int(config.get("default_num_inference_steps", 1)), config.get("default_quality"))
    top = headline(points, config.get("default_quality"))
    info = json.loads((results_dir / top["refined"]["_file"]).read_text()).get("info", {})
    inter = model_dir / "inter_codec" / "config.json"
    video_quality = json.loads(inter.read_text()).get("quality") if inter.exists() else None
    return render_card(name, config=config, scheduler=scheduler, results=points, results_info=info,
                       training=training_budget(model_dir / "training"), video_quality=video_quality,
                       refiner=(model_dir / "refiner" / "model_index.json").exists())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed cards, write nothing")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=CARDS_DIR)
    args = parser.parse_args(argv)

    stale = []
    names = bundled_models()
    for name in names:
        card, path = render_bundled_card(name, args.results), args.out / f"{name}.md"
        if args.check:
            if not path.exists() or path.read_text() != card:
                stale.append(path)
        else:
            path.write_text(card)
            print(f"wrote {path}")
    for orphan in sorted(p for p in args.out.glob("*.md") if p.stem not in names):  # a model no longer bundled
        if args.check:
            stale.append(orphan)
        else:
            orphan.unlink()
            print(f"deleted {orphan} (no bundled model {orphan.stem!r})")
    if stale:
        print(f"out of date (run python model_cards/make_cards.py): {', '.join(map(str, stale))}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
