"""The training recipe (examples/train_rdc.py) run for real on a tiny model: both stages, the CDC-style
baseline, the video inter codec, warm starts, and outputs that load as pipelines."""

import argparse
import json
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, build_tiny_pipeline, load_pipeline, load_script, python_env, random_image

from rdc_diffusers import RDCCodec, RDCInterCodec, RDCVideoPipeline

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_rdc.py"
TINY = ["--crop-size", "64", "--batch-size", "2", "--iterations", "2", "--log-every", "1", "--val-every", "100"]


def run_script(*args: str) -> subprocess.CompletedProcess:
    """The script on a tiny budget; ``args`` come after ``TINY``, so they may override it."""
    return subprocess.run([PYTHON, str(SCRIPT), *TINY, *args], env=python_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)


def train(*args: str) -> list[dict]:
    result = run_script(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    output = Path(args[args.index("--output") + 1])
    return [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        random_image(320, 320, seed=i).save(folder / f"{i}.png")  # the inter stage validates on 192 px clips
    return folder


@pytest.fixture(scope="module")
def codec_run(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "codec"
    log = train("codec", "--train-dir", str(photos), "--val-dir", str(photos), "--output", str(out),
                "--N", "16", "--M", "24")
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert any("val_bpp" in r for r in log)  # measured from real bytes at the end
    return out / "codec"


def test_a_warm_started_codec_trains_in_training_mode(codec_run):
    """from_pretrained gives eval mode, where the rate term would not reach the encoder."""
    args = argparse.Namespace(init=str(codec_run), N=16, M=24)
    assert load_script("examples/train_rdc.py").initial_codec(args).training
    assert load_script("examples/train_rdc.py").initial_codec(argparse.Namespace(init=None, N=16, M=24)).training


@pytest.mark.parametrize("mode", ["residual", "cdc"])
def test_the_second_stage_saves_a_pipeline_that_decodes(mode, codec_run, photos, tmp_path):
    out = tmp_path / mode
    log = train("residual", "--mode", mode, "--codec", str(codec_run), "--train-dir", str(photos),
                "--val-dir", str(photos), "--output", str(out), "--block-out-channels", "8", "16",
                "--cond-channels", "4")
    assert {"val_psnr_fast", "val_lpips_1step"} <= set(log[-1])
    pipe = load_pipeline(out / "pipeline")
    assert pipe.unet.config.residual is (mode == "residual")
    assert pipe.unet.config.residual_scale == (2.0 if mode == "cdc" else pytest.approx(log[0]["residual_scale"]))
    assert pipe.codec.fingerprint() == RDCCodec.from_pretrained(codec_run).fingerprint()  # the codec stayed frozen
    data = pipe.compress(random_image(64, 64))
    assert pipe.decompress(data, output_type="np").images.shape == (1, 64, 64, 3)


def test_a_warm_started_codec_run_resumes_from_its_init(codec_run, photos, tmp_path):
    log = train("codec", "--init", str(codec_run), "--train-dir", str(photos), "--val-dir", str(photos),
                "--output", str(tmp_path / "warm"), "--lmbda", "0.02")
    assert json.loads((tmp_path / "warm" / "args.json").read_text())["init"] == str(codec_run)
    assert RDCCodec.from_pretrained(tmp_path / "warm" / "codec").config.M == 24  # the init's size, not --M
    assert log[-1]["val_bpp"] > 0


def test_a_checkpoint_resumes_with_a_new_budget_but_not_with_other_settings(photos, tmp_path):
    common = ["codec", "--train-dir", str(photos), "--val-dir", str(photos), "--output", str(tmp_path / "run"),
              "--N", "16", "--M", "24"]
    train(*common)
    log = train(*common, "--iterations", "3")  # a longer budget resumes the run
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    result = run_script(*common, "--lmbda", "0.05")
    assert result.returncode != 0
    assert "holds a checkpoint of another run (--lmbda 0.0067 there, 0.05 now)" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads((tmp_path / "run" / "args.json").read_text())["lmbda"] == 0.0067  # left as it was


def test_the_inter_stage_saves_a_p_frame_codec_for_the_video_pipeline(codec_run, photos, tmp_path):
    out = tmp_path / "inter"
    log = train("inter", "--codec", str(codec_run), "--train-dir", str(photos), "--val-dir", str(photos),
                "--output", str(out), "--N", "8", "--M", "8", "--frames", "3")
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert {"val_i_bpp", "val_p_bpp", "val_i_psnr", "val_p_psnr"} <= set(log[-1])  # from real bytes
    tiny = build_tiny_pipeline()  # its unet takes this codec's 24 latent channels
    pipe = RDCVideoPipeline(codec=RDCCodec.from_pretrained(codec_run), unet=tiny.unet, scheduler=tiny.scheduler,
                            inter_codec=RDCInterCodec.from_pretrained(out / "inter_codec"))
    frames = [random_image(64, 64, seed=s) for s in range(3)]
    assert pipe.decompress(pipe.compress(frames, gop_size=3), refine=False).frame_types == ["I", "P", "P"]
