"""The model shipped inside the package: loads offline by its short name, is the CLI's default, and serves
every quality."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, PYTHON, python_env
from PIL import Image

from rdc_diffusers import RDCPipeline
from rdc_diffusers.bitstream.rdc import decode_file
from rdc_diffusers.bitstream.rdcv import decode_video_file
from rdc_diffusers.cli import main
from rdc_diffusers.hub.pretrained import BUNDLED_DIR, DEFAULT_MODEL, bundled_models
from rdc_diffusers.media.image_io import to_tensor as image_tensor
from rdc_diffusers.media.video_io import read_video
from rdc_diffusers.metrics.quality import psnr

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "images" / "kodim23.png"


@pytest.fixture(scope="module")
def bundled():
    pipe = RDCPipeline.from_pretrained(DEFAULT_MODEL)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def crop():
    return Image.open(EXAMPLE).convert("RGB").crop((256, 128, 448, 320))  # 192 x 192


def to_reference(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_the_default_model_is_bundled():
    assert DEFAULT_MODEL == "rdc-bsds"
    assert DEFAULT_MODEL in bundled_models()


def test_the_bundled_model_is_trained(bundled, crop):
    """A random codec scores ~10 dB; the shipped one must actually reconstruct the image."""
    data = bundled.compress(crop)
    fast = bundled.decompress(data, refine=False, output_type="pt").images
    assert decode_file(data).header.quality == bundled.config.default_quality == 50
    assert 0.05 < 8 * len(data) / (192 * 192) < 2.0
    assert psnr(fast, to_reference(crop)) > 25


def test_the_bundled_model_refines_deterministically(bundled, crop):
    data = bundled.compress(crop)
    first = bundled.decompress(data, output_type="np").images
    second = bundled.decompress(data, output_type="np").images
    fast = bundled.decompress(data, refine=False, output_type="np").images
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, fast)


def test_rdc_uses_the_bundled_model_by_default(tmp_path, crop, capsys):
    crop.save(tmp_path / "crop.png")
    assert main(["compress", str(tmp_path / "crop.png"), "-o", str(tmp_path / "crop.rdc")]) == 0
    assert main(["decompress", str(tmp_path / "crop.rdc"), "-o", str(tmp_path / "out.png"), "--fast"]) == 0
    assert main(["info", str(tmp_path / "crop.rdc")]) == 0
    assert f"model:       {DEFAULT_MODEL}" in capsys.readouterr().out
    assert Image.open(tmp_path / "out.png").size == (192, 192)


@pytest.mark.parametrize("name", bundled_models())
def test_every_bundled_model_is_stored_in_float16_and_runs_in_float32(name):
    """Half the size on disk; the float16 check (issue 3: at most 0.05 dB on Kodak) ships beside the weights."""
    from safetensors import safe_open

    pipe = RDCPipeline.from_pretrained(name)
    for component in ("codec", "unet"):
        model = getattr(pipe, component)
        with safe_open(BUNDLED_DIR / name / component / "diffusion_pytorch_model.safetensors", "pt") as f:
            assert {f.get_slice(n).get_dtype() for n, _ in model.named_parameters()} == {"F16"}
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    check = json.loads((BUNDLED_DIR / name / "training" / "fp16_check.json").read_text())
    assert check["images"] >= 8 and len(check["qualities"]) >= 3  # Kodak images, at a low, middle and high rate
    assert all(row["psnr_drop_db"] <= 0.05 for row in check["qualities"].values())


def test_one_model_serves_every_rate(bundled, crop):
    """Higher qualities write more bytes and decode closer to the original, fast and refined."""
    files = [bundled.compress(crop, quality=q) for q in (0, 25, 50, 75, 100)]
    sizes = [len(data) for data in files]
    fast = [psnr(bundled.decompress(data, refine=False, output_type="pt").images, to_reference(crop))
            for data in files]

    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert sizes[-1] > 3 * sizes[0]
    assert fast == sorted(fast)
    for data in (files[0], files[-1]):
        refined = bundled.decompress(data, output_type="pt").images
        assert torch.isfinite(refined).all() and refined.shape == (1, 3, 192, 192)
        assert psnr(refined, to_reference(crop)) > 20


def test_the_issue_6_commands_on_basketballpass(tmp_path):
    """`rdc compress-video CLIP -o clip.rdcv` then `rdc decompress-video clip.rdcv -o clip.mp4`, default model:
    32 frames of 416x240 come back, and the P-frames cost fewer bits than the I-frames at a similar PSNR."""
    clip = DATA_DIR / "video" / "BasketballPass_416x240"
    if not clip.is_dir():
        pytest.skip(f"{clip} not available")
    for command in (["compress-video", str(clip), "-o", "clip.rdcv"],
                    ["decompress-video", "clip.rdcv", "-o", "clip.mp4", "--frames-dir", "frames"]):
        done = subprocess.run([PYTHON, "-m", "rdc_diffusers.cli", *command], cwd=tmp_path, env=python_env(),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    decoded = read_video(tmp_path / "clip.mp4")
    assert len(decoded.frames) == 32 and {f.size for f in decoded.frames} == {(416, 240)}

    file = decode_video_file((tmp_path / "clip.rdcv").read_bytes())
    bits = {kind: [8 * sum(map(len, s)) for t, s in zip(file.frame_types, file.sections, strict=True)
                   if t == kind]
            for kind in "IP"}
    assert np.mean(bits["P"]) < 0.8 * np.mean(bits["I"])
    frames = read_video(tmp_path / "frames").frames
    source = read_video(clip).frames
    scores = {kind: [psnr(image_tensor(frames[t])[0], image_tensor(source[t])[0]) for t in range(32)
                     if file.frame_types[t] == kind] for kind in "IP"}
    assert np.mean(scores["P"]) > np.mean(scores["I"]) - 1.5


def test_a_wheel_ships_every_file_of_the_bundled_models():
    """`pip install .` (not -e) copies only package-data files: every file of bundled/ must match a pattern."""
    import fnmatch

    import tomllib

    root = Path(__file__).parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = root / "src" / "rdc_diffusers"
    files = [p.relative_to(package).as_posix() for p in (package / "bundled").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    assert files
    # setuptools' "*" does not cross "/", unlike fnmatch's: compare the depth too
    left_out = [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/")
                                            for pat in patterns["rdc_diffusers"])]
    assert not left_out


def test_diffusion_pipeline_loads_a_bundled_name_and_lists_them_for_a_typo(tmp_path):
    """After `import rdc_diffusers`, diffusers' own API takes the bundled names as RDCPipeline.from_pretrained does;
    a mistyped one gets the list instead of the Hub cache's "see the stacktrace above". A fresh process, offline,
    with an empty Hugging Face cache: nothing can be downloaded."""
    script = """
import rdc_diffusers  # noqa: F401
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("rdc-bsds")
print(type(pipe).__name__, pipe.model_name)
for cls in (DiffusionPipeline, rdc_diffusers.RDCPipeline, rdc_diffusers.RDCVideoPipeline):
    try:
        cls.from_pretrained("rdc-bsds-q9")
    except OSError as err:
        print(type(err).__name__, err)
"""
    done = subprocess.run([PYTHON, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=python_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr[-2000:]
    message = ("OSError 'rdc-bsds-q9' is not a folder, a bundled model (bundled: rdc-bsds) or a model in the "
               "Hugging Face cache (offline: nothing is downloaded)")
    assert done.stdout.splitlines() == ["RDCPipeline rdc-bsds", message, message, message]
    assert "Couldn't connect" not in done.stderr


def test_the_bundled_refiner_refines_standard_files(crop):
    """rdc-bsds's refiner/ (issue 13): float16 on disk, and on a Kodak crop coded as AVIF at a low quality its refined
    decode is closer to the original in LPIPS than the plain decode of the same bytes, within 1 dB of its PSNR."""
    from safetensors import safe_open

    from rdc_diffusers import RDCRefinerPipeline
    from rdc_diffusers.metrics.quality import lpips

    pipe = RDCRefinerPipeline.from_pretrained(DEFAULT_MODEL)
    pipe.set_progress_bar_config(disable=True)
    for component in ("codec", "unet"):
        with safe_open(BUNDLED_DIR / DEFAULT_MODEL / "refiner" / component / "diffusion_pytorch_model.safetensors",
                       "pt") as f:
            assert {f.get_slice(n).get_dtype() for n, _ in getattr(pipe, component).named_parameters()} == {"F16"}
    data = pipe.compress(crop, format="avif", quality=10)
    plain = pipe.decompress(data, refine=False, output_type="pt").images
    refined = pipe.decompress(data, output_type="pt").images
    reference = to_reference(crop)
    assert lpips(refined, reference).item() < 0.95 * lpips(plain, reference).item()
    assert psnr(refined, reference) > psnr(plain, reference) - 1.0
    near_lossless = pipe.compress(crop, format="jpeg", quality=95)  # above the refiner's measured ceiling
    with pytest.warns(UserWarning, match="stops improving JPEG"):
        kept = pipe.decompress(near_lossless, output_type="pt").images
    assert torch.equal(kept, pipe.decompress(near_lossless, refine=False, output_type="pt").images)
