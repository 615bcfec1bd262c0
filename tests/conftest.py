"""Shared fixtures: a tiny random-weight RDC pipeline (fast on one CPU thread) and the shared data folder.

The tiny model has the real architecture with a few channels, so every test exercises the real code path
(compressai's rANS coder, the diffusers UNet and schedulers, save/load) in milliseconds per image.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import sysconfig
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from PIL import Image

import rdc_diffusers
from rdc_diffusers import BaseCodec, RDCCodec, RDCPipeline, RDCRefinerPipeline, ResidualUNet, pipelines
from rdc_diffusers.cli import main
from rdc_diffusers.pipelines.pipeline_rdc import DEFAULT_SCHEDULER_CONFIG

# The repository sits beside `shared/` (here and in CI).
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_script(relative_path: str):
    """A script of the repository (not a package module) imported by its path, e.g. "benchmarks/run.py"."""
    path = Path(__file__).resolve().parents[1] / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
KODAK_DIR = DATA_DIR / "kodak"


def build_tiny_pipeline(seed: int = 0) -> RDCPipeline:
    """A random-weight pipeline with the real architecture and a handful of channels."""
    torch.manual_seed(seed)
    codec = RDCCodec(N=16, M=24)
    unet = ResidualUNet(latent_channels=24, cond_channels=4, block_out_channels=(8, 16), norm_num_groups=4)
    scheduler = DDIMScheduler(**DEFAULT_SCHEDULER_CONFIG, prediction_type="sample")
    pipe = RDCPipeline(codec=codec, unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pipeline(path: str | os.PathLike) -> RDCPipeline:
    return pipelines.load_pipeline(path, disable=True)


def build_tiny_refiner(seed: int = 0) -> RDCRefinerPipeline:
    """A refiner on the tiny pipeline's unet, its analysis transform the tiny codec's (as training starts it)."""
    image = build_tiny_pipeline(seed)
    base = BaseCodec(N=16, M=24)
    base.g_a.load_state_dict(image.codec.g_a.state_dict())
    pipe = RDCRefinerPipeline(codec=base, unet=image.unet, scheduler=image.scheduler, default_format="webp")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def shown_progress(pipe) -> io.StringIO:
    """Where ``pipe``'s progress bars now write, every update (tqdm skips updates within 0.1 s by default)."""
    text = io.StringIO()
    pipe.set_progress_bar_config(file=text, disable=False, mininterval=0, miniters=1)
    return text


def random_image(height: int, width: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Smooth-ish random content (noise plus a gradient), converted to ``mode``."""
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 55, height)[:, None, None]
    pixels = np.clip(gradient + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


def wide_gamut_profile() -> bytes:
    """An RGB ICC profile that is not sRGB (no Display P3 file ships with Pillow): littleCMS's sRGB profile renamed
    "wRGB built-in", its red, green and blue moved to Display P3's (XYZ, D50)."""
    import struct

    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile = bytearray(bytes(profile).replace("sRGB".encode("utf-16-be"), "wRGB".encode("utf-16-be")))
    p3 = {b"rXYZ": (0.5151, 0.2412, -0.0011), b"gXYZ": (0.2920, 0.6922, 0.0419), b"bXYZ": (0.1571, 0.0666, 0.7841)}
    (count,) = struct.unpack_from(">I", profile, 128)
    for i in range(count):
        signature, offset, _ = struct.unpack_from(">4sII", profile, 132 + 12 * i)
        if signature in p3:  # an XYZType: 'XYZ ', 4 reserved bytes, then X, Y, Z as s15Fixed16
            struct.pack_into(">3i", profile, offset + 8, *(round(v * 65536) for v in p3[signature]))
    return bytes(profile)


def python_env(**overrides: str) -> dict[str, str]:
    """Environment for a child Python that imports the same ``rdc_diffusers`` as this process.

    In CI the package is pip-installed (the child finds it by itself); locally it comes from
    ``PYTHONPATH=src`` or a checkout, whose folder is put first on the child's PYTHONPATH.
    """
    env = dict(os.environ)
    package_parent = str(Path(rdc_diffusers.__file__).resolve().parents[1])
    installed = {str(Path(sysconfig.get_path(key)).resolve()) for key in ("purelib", "platlib")}
    if package_parent not in installed:  # never put site-packages ahead of the standard library
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env.update(overrides)
    return env


PYTHON = sys.executable


@pytest.fixture(scope="session")
def tiny_pipeline() -> RDCPipeline:
    """Shared by many tests: do not change its scheduler, dtype or weights (load a fresh copy instead)."""
    return build_tiny_pipeline(seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_pipeline, tmp_path_factory) -> Path:
    """``tiny_pipeline`` saved with ``save_pretrained``; the folder name is the model name files record."""
    path = tmp_path_factory.mktemp("models") / "tiny-rdc"
    tiny_pipeline.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory) -> Path:
    """A second tiny model with different random weights: its files must not decode with ``tiny-rdc``."""
    path = tmp_path_factory.mktemp("models") / "other-tiny-rdc"
    build_tiny_pipeline(seed=1).save_pretrained(path)
    return path


@pytest.fixture
def fresh_pipeline(tiny_model_dir) -> RDCPipeline:
    """A private copy of the tiny model, for tests that swap the scheduler or change dtype."""
    return load_pipeline(tiny_model_dir)


@pytest.fixture
def kodak_image() -> Path:
    path = KODAK_DIR / "kodim23.png"
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


class Run(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def rdc(capsys):
    """Run ``rdc ARGS...`` in this process: returns (exit code, stdout, stderr)."""

    def run(*args) -> Run:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run
