"""The README's ```bash and ```python blocks, run as written, top to bottom, in one temporary folder.

A newcomer copies these blocks first, so they are tested as they stand, each in a fresh process (``bash -e`` or
``python -c``) with the installed ``rdc`` and ``rdc_diffusers``, offline, with an empty Hugging Face cache. Only
the inputs are made smaller (``SUBSTITUTIONS``: the same kind of input, so every command does the same work on
fewer pixels), and a few blocks are not run, for the reason ``SKIPPED`` gives; every rule must still match a block,
so the table cannot go stale silently.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, python_env
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "images" / "kodim23.png"

SUBSTITUTIONS = {
    # a 128x96 crop of the example photo instead of its 768x512 (the refined decodes take ~1/30 of the time)
    "examples/images/kodim23.png": "kodim23_crop.png",
    # four 96x64 frames panning over the example photo instead of 32 frames of 416x240 (shared/ data, not in a wheel)
    "../shared/data/video/BasketballPass_416x240": "basketball_small",
}
"""README text -> what the test runs instead, made by :func:`make_inputs`."""

SKIPPED = {
    "pip install": "installs packages: the test runs in the environment they were installed into",
    "bash .ci/run": "is CI itself (a new venv, every install, the whole test suite)",
    "accelerate launch": "needs several processes on a placeholder folder DIR; the same launch with two CPU processes "
                         "is tests/test_benchmarking.py::test_two_process_accelerate_launch",
    "push_to_hub": "uploads to the Hugging Face Hub (an account and the network), then loads what it uploaded",
}
"""A block containing the text is not run, for the reason given; each rule must match a block."""

NEVER_RUN = {"rdc demo": "starts a server that runs until stopped; tests/test_demo.py drives the demo"}
"""Like SKIPPED, for blocks the README may gain (it has none now): a guard, so no rule to match."""

BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every ```bash and ```python block, in README order."""
    return BLOCK.findall(README.read_text())


def skip_reason(text: str) -> str | None:
    return next((reason for marker, reason in (SKIPPED | NEVER_RUN).items() if marker in text), None)


def make_inputs(folder: Path) -> None:
    """The small stand-ins that SUBSTITUTIONS names, cut from the example photo."""
    photo = Image.open(EXAMPLE).convert("RGB")
    photo.crop((320, 160, 448, 256)).save(folder / SUBSTITUTIONS["examples/images/kodim23.png"])
    frames = folder / SUBSTITUTIONS["../shared/data/video/BasketballPass_416x240"]
    frames.mkdir()
    for i in range(4):
        photo.crop((300 + 4 * i, 200, 396 + 4 * i, 264)).save(frames / f"f{i:03d}.png")


def test_the_skipped_blocks_hold_nothing_else():
    """An install block must be only installs, or a command could hide in a block the test never runs; and every
    SKIPPED rule must still match a block of the README."""
    blocks = readme_blocks()
    assert blocks, "no ```bash or ```python block found in README.md"
    for marker in SKIPPED:
        assert any(marker in text for _, text in blocks), f"SKIPPED rule {marker!r} matches no README block"
    for _, text in blocks:
        if "pip install" in text:
            commands = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            assert all(line.startswith("pip install ") for line in commands), text
    for original in SUBSTITUTIONS:
        assert any(original in text for _, text in blocks if skip_reason(text) is None), original


def test_the_readme_blocks_run_as_written(tmp_path):
    if not EXAMPLE.exists():
        pytest.skip(f"{EXAMPLE} not available")
    make_inputs(tmp_path)
    env = python_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / ".hf"), HF_HOME=str(tmp_path / ".hf"))
    bin_dir = str(Path(PYTHON).parent)
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    # `rdc` is the installed entry point; with only PYTHONPATH=src there is none, and the module is the same command
    rdc = "" if shutil.which("rdc", path=bin_dir) else f'rdc() {{ "{PYTHON}" -m rdc_diffusers.cli "$@"; }}\n'
    ran = 0
    for language, text in readme_blocks():
        if skip_reason(text) is not None:
            continue
        for original, small in SUBSTITUTIONS.items():
            text = text.replace(original, small)
        command = ["bash", "-euo", "pipefail", "-c", rdc + text] if language == "bash" else [PYTHON, "-c", text]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"README block failed:\n{text}\n--- stderr:\n{done.stderr[-3000:]}"
        ran += 1
    assert ran == 6  # the quick start commands, Python, the video commands and Python, the refiner commands and Python

    for name in ("kodim23.rdc", "kodim23_refined.png", "kodim23_fast.png", "kodim23_10k.rdc", "clip.rdcv",
                 "clip.mp4", "clip_python.mp4"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert Image.open(tmp_path / "kodim23_refined.png").size == (128, 96)
    assert (tmp_path / "kodim23_10k.rdc").stat().st_size <= 10_000
    assert len(list((tmp_path / "clip_frames").glob("*.png"))) == 4


def test_the_layout_table_has_one_row_per_package_folder():
    """Each folder of the package is one row of the README's layout table, and every path a row names exists."""
    table = README.read_text().split("## Layout", 1)[1].split("\n\n", 2)[1]
    paths = [re.match(r"\| `([^`]+)`", line).group(1) for line in table.splitlines()[2:]]
    package = ROOT / "src" / "rdc_diffusers"
    folders = sorted(f"src/rdc_diffusers/{p.name}/" for p in package.iterdir()
                     if p.is_dir() and p.name != "__pycache__")
    assert sorted(p for p in paths if p.startswith("src/rdc_diffusers/") and p.endswith("/")) == folders
    assert all((ROOT / p.rstrip("/")).exists() for p in paths if "*" not in p)
