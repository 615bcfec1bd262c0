"""model_cards/: the committed cards are exactly what make_cards.py renders from the committed results."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import load_script
from huggingface_hub import ModelCard

from rdc_diffusers.errors import MissingResultsError
from rdc_diffusers.evaluation.results import format_quality
from rdc_diffusers.hub.model_card import render_card, training_budget
from rdc_diffusers.hub.pretrained import BUNDLED_DIR, bundled_models

ROOT = Path(__file__).resolve().parents[1]
make_cards = load_script("model_cards/make_cards.py")
RESULTS = ROOT / "benchmarks/results/results.json"


def _default_quality(name: str) -> float:
    return json.loads((BUNDLED_DIR / name / "model_index.json").read_text())["default_quality"]


def test_committed_cards_match_a_fresh_rendering(capsys):
    assert make_cards.main(["--check"]) == 0, capsys.readouterr().err


def test_only_bundled_models_have_cards():
    assert sorted(p.stem for p in (ROOT / "model_cards").glob("*.md")) == sorted(bundled_models())


@pytest.mark.parametrize("name", bundled_models())
def test_model_index_holds_the_measured_numbers_at_the_default_quality(name):
    card = ModelCard(make_cards.render_bundled_card(name))
    assert (card.data.license, card.data.library_name, card.data.pipeline_tag) == ("apache-2.0", "diffusers",
                                                                                    "image-to-image")
    assert {"image-compression", "diffusion", "learned-compression"} <= set(card.data.tags)
    summary = json.loads(RESULTS.read_text())["summary"]
    fast = summary[f"{name}/fast@q{format_quality(_default_quality(name))}"]
    got = {(r.metric_type, r.metric_name.split(", ")[-1]): r.metric_value for r in card.data.eval_results}
    assert got[("psnr", "fast")] == pytest.approx(fast["psnr"], abs=1e-4)
    assert got[("lpips", "fast")] == pytest.approx(fast["lpips"], abs=1e-4)
    measured = {m for m in ("fid", "kid") if fast.get(m) is not None}  # benchmarks run with --no-fid lack them
    assert {t for t, _ in got} == {"bpp", "psnr", "ms_ssim", "lpips"} | measured
    for metric in measured:
        assert got[(metric, "fast")] == pytest.approx(fast[metric], abs=1e-4)  # the card rounds to 4 decimals


@pytest.mark.parametrize("name", bundled_models())
def test_the_card_has_one_row_per_measured_quality(name):
    summary = json.loads(RESULTS.read_text())["summary"]
    qualities = sorted({e["quality"] for e in summary.values() if e["method"] == name})
    assert len(qualities) >= 2
    rows = [line for line in make_cards.render_bundled_card(name).splitlines() if line.startswith("| ")][1:]
    rows = rows[:len(qualities)]
    assert [row.split(" | ")[0].strip("| *").split()[0] for row in rows] == [format_quality(q) for q in qualities]
    default = format_quality(_default_quality(name))
    assert [row for row in rows if "(default)" in row] == [r for r in rows if r.startswith(f"| **{default} ")]
    fast = summary[f"{name}/fast@q{format_quality(qualities[0])}"]
    assert f"| {fast['bpp']:.3f} | {fast['psnr']:.2f} / " in rows[0]


def test_a_bundled_model_without_results_fails_loudly(tmp_path):
    results = json.loads(RESULTS.read_text())
    results["summary"] = {k: v for k, v in results["summary"].items() if v["method"] != "rdc-bsds"}
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(MissingResultsError, match="no benchmark results for 'rdc-bsds'"):
        make_cards.render_bundled_card("rdc-bsds", tmp_path)


def test_a_card_needs_its_default_quality_and_both_decodes(tmp_path):
    results = json.loads(RESULTS.read_text())
    default = f"@q{format_quality(_default_quality('rdc-bsds'))}"
    without_default = {k: v for k, v in results["summary"].items() if not k.endswith(default)}
    (tmp_path / "results.json").write_text(json.dumps({"info": results["info"], "summary": without_default}))
    with pytest.raises(MissingResultsError, match="at its default quality 50"):
        make_cards.render_bundled_card("rdc-bsds", tmp_path)
    no_refined = {k: v for k, v in results["summary"].items() if not k.startswith("rdc-bsds/ddim-1@q0")}
    (tmp_path / "results.json").write_text(json.dumps({"info": results["info"], "summary": no_refined}))
    with pytest.raises(MissingResultsError, match=r"no refined \(DDIMScheduler, 1 step\) benchmark results for "
                                                  r"'rdc-bsds' at quality 0;"):
        make_cards.render_bundled_card("rdc-bsds", tmp_path)


def test_a_note_on_the_results_reaches_the_card(tmp_path):
    """A hand-added ``info.note`` (e.g. why the times are not the model's speed) is what the card's reader needs."""
    results = json.loads(RESULTS.read_text())
    results["info"]["note"] = "measured while another job ran"
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert "Note: measured while another job ran" in make_cards.render_bundled_card("rdc-bsds", tmp_path)
    del results["info"]["note"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert "Note:" not in make_cards.render_bundled_card("rdc-bsds", tmp_path)


def test_results_may_be_split_over_files_but_not_duplicated(tmp_path):
    results = json.loads(RESULTS.read_text())
    mine = {k: v for k, v in results["summary"].items() if v["method"] == "rdc-bsds"}
    low = {k: v for k, v in mine.items() if v["quality"] < 50}
    (tmp_path / "a.json").write_text(json.dumps({"info": results["info"], "summary": low}))
    high = {k: v for k, v in mine.items() if k not in low}
    other = {"other/fast": {**next(iter(low.values())), "method": "other"}}
    (tmp_path / "b.json").write_text(json.dumps({"info": results["info"], "summary": high | other}))
    assert make_cards.render_bundled_card("rdc-bsds", tmp_path) == make_cards.render_bundled_card("rdc-bsds")
    shutil.copy(tmp_path / "a.json", tmp_path / "c.json")
    with pytest.raises(MissingResultsError, match="ambiguous"):
        make_cards.render_bundled_card("rdc-bsds", tmp_path)


def test_cards_of_models_no_longer_bundled_are_stale_and_deleted(tmp_path, capsys):
    for card in (ROOT / "model_cards").glob("*.md"):
        shutil.copy(card, tmp_path / card.name)
    (tmp_path / "rdc-bsds-q3.md").write_text("# retired\n")
    assert make_cards.main(["--check", "--out", str(tmp_path)]) == 1
    assert "rdc-bsds-q3.md" in capsys.readouterr().err
    assert make_cards.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.md")) == sorted(bundled_models())


def test_an_unbenchmarked_card_as_save_pretrained_writes_it():
    """What hub.write_model_files renders for any saved model: no numbers, the variable-rate usage."""
    card = render_card("my-rdc", config={"default_num_inference_steps": 2, "default_quality": 60.0},
                       scheduler="DDIMScheduler", repo_id="me/my-rdc")
    assert "Not benchmarked" in card and "default 60" in card and "target_bpp=0.3" in card
    assert 'RDCPipeline.from_pretrained("me/my-rdc")' in card and "model-index" not in card


def test_training_budget_counts_what_each_run_added_in_natural_order(tmp_path):
    def write(run: str, rows: list[tuple[int, float]]) -> None:
        lines = [json.dumps({"stage": "codec", "step": s, "minutes": m, "loss": 1.0}) for s, m in rows]
        (tmp_path / f"{run}_train_log.jsonl").write_text("\n".join(lines) + "\n")

    write("codec-phase10", [(1225, 0.9), (1250, 1.8), (1300, 3.0)])  # resumed at its step-1,200 checkpoint
    write("codec-phase2", [(25, 1.0), (50, 2.0), (125, 4.0), (150, 0.5), (175, 1.5)])  # two segments
    # stopped at step 60, resumed from its step-50 checkpoint: steps 51-60 ran twice but count once
    write("codec-phase3", [(25, 1.0), (50, 2.0), (60, 2.4), (75, 0.5), (100, 1.5)])
    (tmp_path / "residual_train_log.jsonl").write_text(  # a start row without a loss: counted from that step
        json.dumps({"stage": "residual", "step": 100, "minutes": 0.2}) + "\n"
        + json.dumps({"stage": "residual", "step": 150, "minutes": 1.0, "loss": 1.0}) + "\n")
    budget = training_budget(tmp_path)
    assert list(budget) == ["codec-phase2", "codec-phase3", "codec-phase10", "residual"]
    assert budget["codec-phase3"]["iterations"] == 100
    assert budget["residual"]["iterations"] == 50
    assert budget["codec-phase10"] == {"minutes": 3, "iterations": 100, "args": {}}
    assert budget["codec-phase2"]["iterations"] == 125 + 50 and budget["codec-phase2"]["minutes"] == 6


def test_a_run_started_from_a_component_inside_the_model_is_its_own_earlier_weights(tmp_path):
    """The refiner trains on from the model's refiner/unet: not another model the card should credit."""
    runs = {"refiner": "src/rdc_diffusers/bundled/my-rdc/refiner/unet", "codec": "runs/vr_codec/codec",
            "residual": "src/rdc_diffusers/bundled/my-rdc-q3/unet"}
    for run, init in runs.items():
        (tmp_path / f"{run}_args.json").write_text(json.dumps({"stage": run, "init": init}))
        (tmp_path / f"{run}_train_log.jsonl").write_text(json.dumps({"stage": run, "step": 10, "minutes": 1.0}) + "\n")
    card = render_card("my-rdc", config={"default_num_inference_steps": 1}, scheduler="DDIMScheduler",
                       training=training_budget(tmp_path))
    assert "on top of the training of my-rdc-q3, vr_codec it started from" in card
    assert card.count("warm start from this model’s earlier weights") == 1


def test_a_run_continued_from_another_logged_runs_output_names_that_run(tmp_path):
    """A continuation of a run kept in runs/ (``--init runs/unet_K/pipeline/unet``) is this model's own training,
    not a model called ``pipeline``."""
    runs = {"residual-a": {"init": "src/rdc_diffusers/bundled/my-rdc/unet", "output": "runs/unet_K"},
            "residual-b": {"init": "runs/unet_K/pipeline/unet", "output": "runs/unet_M"}}
    for run, args in runs.items():
        (tmp_path / f"{run}_args.json").write_text(json.dumps({"stage": "residual", **args}))
        (tmp_path / f"{run}_train_log.jsonl").write_text(json.dumps({"stage": "residual", "step": 10, "minutes": 1.0})
                                                         + "\n")
    card = render_card("my-rdc", config={"default_num_inference_steps": 1}, scheduler="DDIMScheduler",
                       training=training_budget(tmp_path))
    assert "warm start from run residual-a |" in card and "pipeline" not in card.split("## Training data")[1]
    assert "on top of the training of" not in card


def test_a_zoomed_run_says_so_and_an_unzoomed_one_does_not(tmp_path):
    """--max-upscale changes what the UNet saw: the card's run table names it (and only where it was used)."""
    for run, zoom in (("residual-session30", 1.6), ("residual-session29", 1.0)):
        (tmp_path / f"{run}_args.json").write_text(json.dumps({"stage": "residual", "max_upscale": zoom}))
        (tmp_path / f"{run}_train_log.jsonl").write_text(json.dumps({"step": 10, "minutes": 1.0}) + "\n")
    card = render_card("my-rdc", config={"default_num_inference_steps": 1}, scheduler="DDIMScheduler",
                       training=training_budget(tmp_path))
    rows = {line.split(" | ")[0]: line for line in card.splitlines() if line.startswith("| residual-session")}
    assert "random zoom up to 1.6x" in rows["| residual-session30"]
    assert "zoom" not in rows["| residual-session29"]


def test_a_refiner_trained_over_part_of_a_codec_s_range_names_it(tmp_path):
    (tmp_path / "refiner_args.json").write_text(json.dumps({"stage": "refiner", "bases": ["jpeg", "avif"],
                                                           "base_qualities": ["jpeg=5-60", "avif=0-65"]}))
    (tmp_path / "refiner_train_log.jsonl").write_text(json.dumps({"step": 10, "minutes": 1.0}) + "\n")
    card = render_card("my-rdc", config={"default_num_inference_steps": 1}, scheduler="DDIMScheduler",
                       training=training_budget(tmp_path))
    row = next(line for line in card.splitlines() if line.startswith("| refiner |"))
    assert "refiner of jpeg / avif decodes" in row and "trained over Pillow qualities jpeg=5-60 avif=0-65" in row


def test_a_refiner_that_drew_one_codec_more_often_says_by_how_much(tmp_path):
    """--bases jpeg webp jpeg webp avif (session 34): JPEG and WebP each got two fifths of the crops."""
    (tmp_path / "refiner_args.json").write_text(json.dumps({"stage": "refiner",
                                                           "bases": ["jpeg", "webp", "jpeg", "webp", "avif"]}))
    (tmp_path / "refiner_train_log.jsonl").write_text(json.dumps({"step": 10, "minutes": 1.0}) + "\n")
    card = render_card("my-rdc", config={"default_num_inference_steps": 1}, scheduler="DDIMScheduler",
                       training=training_budget(tmp_path))
    row = next(line for line in card.splitlines() if line.startswith("| refiner |"))
    assert "refiner of jpeg / webp / avif decodes (drawn 2:2:1)," in row


def test_each_run_names_its_seed(tmp_path):
    """Sessions 10-35 continued with --seed 0 and replayed the same crops and noise: the card shows the seed."""
    (tmp_path / "refiner_args.json").write_text(json.dumps({"stage": "refiner", "bases": ["jpeg"], "seed": 2}))
    (tmp_path / "refiner_train_log.jsonl").write_text(json.dumps({"step": 10, "minutes": 1.0}) + "\n")
    card = render_card("my-rdc", config={"default_num_inference_steps": 1}, scheduler="DDIMScheduler",
                       training=training_budget(tmp_path))
    row = next(line for line in card.splitlines() if line.startswith("| refiner |"))
    assert ", seed 2" in row


def test_runs_whose_weights_were_averaged_are_named_once(tmp_path):
    """Session 35 trained two refiners side by side and shipped their mean (examples/average_weights.py)."""
    for run in ("refiner-a", "refiner-b"):
        (tmp_path / f"{run}_args.json").write_text(json.dumps({"stage": "refiner", "bases": ["jpeg"]}))
        (tmp_path / f"{run}_train_log.jsonl").write_text(json.dumps({"step": 10, "minutes": 1.0}) + "\n")
    card = render_card("my-rdc", config={"default_num_inference_steps": 1}, scheduler="DDIMScheduler",
                       training=training_budget(tmp_path))
    assert "averaged" not in card
    (tmp_path / "refiner_average.json").write_text(json.dumps({"runs": ["refiner-a", "refiner-b"]}))
    card = render_card("my-rdc", config={"default_num_inference_steps": 1}, scheduler="DDIMScheduler",
                       training=training_budget(tmp_path))
    assert card.count("weights averaged") == 1 and "Runs `refiner-a` and `refiner-b` were trained" in card
