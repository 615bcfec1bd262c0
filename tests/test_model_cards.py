"""model_cards/: the committed cards are exactly what make_cards.py renders from the committed results."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import load_script
from huggingface_hub import ModelCard

from rdc_diffusers.model_card import MissingResultsError
from rdc_diffusers.pretrained import bundled_models

ROOT = Path(__file__).resolve().parents[1]
make_cards = load_script("model_cards/make_cards.py")


def test_committed_cards_match_a_fresh_rendering(capsys):
    assert make_cards.main(["--check"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", bundled_models())
def test_model_index_holds_the_measured_kodak_numbers(name):
    card = ModelCard(make_cards.render_bundled_card(name))
    assert (card.data.license, card.data.library_name, card.data.pipeline_tag) == ("apache-2.0", "diffusers",
                                                                                    "image-to-image")
    assert {"image-compression", "diffusion", "learned-compression"} <= set(card.data.tags)
    summary = json.loads((ROOT / "benchmarks/results/results.json").read_text())["summary"]
    fast = summary[f"{name}/fast"]
    got = {(r.metric_type, r.metric_name.split(", ")[-1]): r.metric_value for r in card.data.eval_results}
    assert got[("psnr", "fast")] == pytest.approx(fast["psnr"], abs=1e-4)
    assert got[("lpips", "fast")] == pytest.approx(fast["lpips"], abs=1e-4)
    measured = {m for m in ("fid", "kid") if fast.get(m) is not None}  # benchmarks run with --no-fid lack them
    assert {t for t, _ in got} == {"bpp", "psnr", "ms_ssim", "lpips"} | measured
    for metric in measured:
        assert got[(metric, "fast")] == pytest.approx(fast[metric], abs=1e-4)  # the card rounds to 4 decimals


def test_a_bundled_model_without_results_fails_loudly(tmp_path):
    results = json.loads((ROOT / "benchmarks/results/results.json").read_text())
    results["summary"] = {k: v for k, v in results["summary"].items() if v["method"] != "rdc-bsds-q3"}
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(MissingResultsError, match="no benchmark results for 'rdc-bsds-q3'"):
        make_cards.render_bundled_card("rdc-bsds-q3", tmp_path)


def test_results_may_be_split_over_files_but_not_duplicated(tmp_path):
    results = json.loads((ROOT / "benchmarks/results/results.json").read_text())
    mine = {k: v for k, v in results["summary"].items() if v["method"] == "rdc-bsds-q3"}
    (tmp_path / "a.json").write_text(json.dumps({"info": results["info"], "summary": mine}))
    (tmp_path / "b.json").write_text(json.dumps({"summary": {"other/fast": {**mine["rdc-bsds-q3/fast"],
                                                                           "method": "other"}}}))
    assert make_cards.render_bundled_card("rdc-bsds-q3", tmp_path) == make_cards.render_bundled_card("rdc-bsds-q3")
    shutil.copy(tmp_path / "a.json", tmp_path / "c.json")
    with pytest.raises(MissingResultsError, match="ambiguous"):
        make_cards.render_bundled_card("rdc-bsds-q3", tmp_path)
