"""The `rdc` command: compress → info → decompress, refusing to clobber files, and one-line errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import PYTHON, Run, load_pipeline, python_env, random_image
from diffusers import DDIMScheduler
from PIL import Image

from rdc_diffusers.cli import main


@pytest.fixture
def small_png(tmp_path) -> Path:
    path = tmp_path / "small.png"
    random_image(40, 70).save(path)
    return path


def assert_one_line_error(run: Run | subprocess.CompletedProcess) -> str:
    """A failed command: non-zero exit, one line on stderr, no traceback. Returns that line."""
    code, err = (run.code, run.err) if isinstance(run, Run) else (run.returncode, run.stderr)
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_compress_info_decompress(rdc, small_png, tiny_model_dir, tmp_path):
    rdc_file = tmp_path / "small.rdc"

    code, out, _ = rdc("compress", small_png, "-o", rdc_file, "--model", tiny_model_dir, "--seed", 5, "--steps", 3)
    assert code == 0
    size = rdc_file.stat().st_size
    assert f"{size} bytes" in out and f"{8 * size / (70 * 40):.4f} bpp" in out

    code, out, _ = rdc("info", rdc_file)
    assert code == 0
    model_id = load_pipeline(tiny_model_dir).codec.fingerprint().hex()
    for expected in ("70x40", "original mode RGB", "tiny-rdc", model_id, "seed 5", "3 steps"):
        assert expected in out, expected

    code, out, _ = rdc("decompress", rdc_file, "-o", tmp_path / "fast.png", "--model", tiny_model_dir, "--fast")
    assert code == 0 and "fast" in out
    decoded = {}
    for scheduler in ("ddim", "ddpm", "dpm"):
        output = tmp_path / f"{scheduler}.png"
        code, out, _ = rdc("decompress", rdc_file, "-o", output, "--model", tiny_model_dir,
                           "--steps", 2, "--scheduler", scheduler)
        assert code == 0 and "refined" in out
        decoded[scheduler] = Image.open(output)
        assert decoded[scheduler].size == (70, 40) and decoded[scheduler].mode == "RGB"

    # The command writes exactly what the Python API decodes from the same bytes.
    pipe = load_pipeline(tiny_model_dir)
    data = rdc_file.read_bytes()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "fast.png")),
                                  np.asarray(pipe.decompress(data, refine=False).images[0]))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    np.testing.assert_array_equal(np.asarray(decoded["ddim"]),
                                  np.asarray(pipe.decompress(data, num_inference_steps=2).images[0]))
    assert not np.array_equal(np.asarray(decoded["ddim"]), np.asarray(Image.open(tmp_path / "fast.png")))


def test_grayscale_comes_back_grayscale(rdc, tiny_model_dir, tmp_path):
    random_image(20, 30, mode="L").save(tmp_path / "gray.png")
    assert rdc("compress", tmp_path / "gray.png", "-o", tmp_path / "gray.rdc", "--model", tiny_model_dir)[0] == 0
    assert "original mode L" in rdc("info", tmp_path / "gray.rdc")[1]
    assert rdc("decompress", tmp_path / "gray.rdc", "-o", tmp_path / "out.png", "--model", tiny_model_dir)[0] == 0
    decoded = Image.open(tmp_path / "out.png")
    assert decoded.mode == "L" and decoded.size == (30, 20)


def test_existing_outputs_are_kept_unless_forced(rdc, small_png, tiny_model_dir, tmp_path):
    rdc_file, png = tmp_path / "out.rdc", tmp_path / "out.png"
    rdc_file.write_bytes(b"precious")
    png.write_bytes(b"also precious")

    line = assert_one_line_error(rdc("compress", small_png, "-o", rdc_file, "--model", tiny_model_dir))
    assert "already exists" in line and "--force" in line
    assert rdc_file.read_bytes() == b"precious"

    assert rdc("compress", small_png, "-o", rdc_file, "--model", tiny_model_dir, "--force")[0] == 0
    assert rdc_file.read_bytes() == load_pipeline(tiny_model_dir).compress(Image.open(small_png))

    line = assert_one_line_error(rdc("decompress", rdc_file, "-o", png, "--model", tiny_model_dir, "--fast"))
    assert "already exists" in line
    assert png.read_bytes() == b"also precious"

    assert rdc("decompress", rdc_file, "-o", png, "--model", tiny_model_dir, "--fast", "--force")[0] == 0
    assert Image.open(png).size == (70, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "out.rdc", "small.png"]  # no temporary left


def test_a_corrupted_file_is_one_line_error(rdc, small_png, tiny_model_dir, tmp_path):
    rdc_file = tmp_path / "small.rdc"
    assert rdc("compress", small_png, "-o", rdc_file, "--model", tiny_model_dir)[0] == 0
    data = bytearray(rdc_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    rdc_file.write_bytes(bytes(data))

    decompress = ["decompress", rdc_file, "-o", tmp_path / "out.png", "--model", tiny_model_dir]
    for command in (["info", rdc_file], decompress):
        line = assert_one_line_error(rdc(*command))
        assert "checksum" in line
    assert not (tmp_path / "out.png").exists()


def test_bad_paths_and_models_are_one_line_errors(rdc, small_png, tiny_model_dir, tmp_path):
    rdc_file = tmp_path / "small.rdc"
    assert rdc("compress", small_png, "-o", rdc_file, "--model", tiny_model_dir)[0] == 0
    missing = tmp_path / "missing.png"

    cases = {
        "missing compress input": ["compress", missing, "-o", tmp_path / "a.rdc", "--model", tiny_model_dir],
        "missing decompress input": ["decompress", tmp_path / "missing.rdc", "-o", tmp_path / "a.png",
                                     "--model", tiny_model_dir],
        "missing info input": ["info", tmp_path / "missing.rdc"],
        "unknown extension": ["decompress", rdc_file, "-o", tmp_path / "a.xyz", "--model", tiny_model_dir],
        "unknown model": ["compress", small_png, "-o", tmp_path / "a.rdc", "--model", tmp_path / "no-such-model"],
        "output folder missing": ["compress", small_png, "-o", tmp_path / "nowhere" / "a.rdc",
                                  "--model", tiny_model_dir],
    }
    for name, args in cases.items():
        line = assert_one_line_error(rdc(*args))
        assert line.startswith(f"rdc {args[0]}: error:"), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.png", "small.rdc"]


def test_an_unreadable_image_is_one_line_error(rdc, tiny_model_dir, tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    line = assert_one_line_error(rdc("compress", tmp_path / "text.png", "-o", tmp_path / "a.rdc",
                                      "--model", tiny_model_dir))
    assert "text.png" in line


def test_a_file_from_another_model_names_both(rdc, small_png, tiny_model_dir, other_model_dir, tmp_path):
    rdc_file = tmp_path / "other.rdc"
    assert rdc("compress", small_png, "-o", rdc_file, "--model", other_model_dir)[0] == 0

    line = assert_one_line_error(rdc("decompress", rdc_file, "-o", tmp_path / "out.png", "--model", tiny_model_dir))

    assert "'other-tiny-rdc'" in line and "'tiny-rdc'" in line
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("option", [["--seed", "-1"], ["--seed", str(2**64)], ["--steps", "-1"], ["--steps", "x"]])
def test_out_of_range_options_are_usage_errors(small_png, tiny_model_dir, tmp_path, capsys, option):
    with pytest.raises(SystemExit) as info:
        main(["compress", str(small_png), "-o", str(tmp_path / "a.rdc"), "--model", str(tiny_model_dir), *option])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "a.rdc").exists()


def rdc_process(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The real command line: ``python -m rdc_diffusers.cli ARGS...`` in a fresh interpreter."""
    return subprocess.run([PYTHON, "-m", "rdc_diffusers.cli", *map(str, args)], cwd=cwd, env=python_env(),
                          capture_output=True, text=True, timeout=300)


def test_command_line_on_a_kodak_image(kodak_image, tiny_model_dir, tmp_path):
    model = str(tiny_model_dir)

    result = rdc_process("compress", kodak_image, "-o", "kodim23.rdc", "--model", model, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(768x512)" in result.stdout

    result = rdc_process("info", "kodim23.rdc", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "768x512" in result.stdout and "tiny-rdc" in result.stdout

    result = rdc_process("decompress", "kodim23.rdc", "-o", "kodim23.png", "--model", model, "--steps", "2",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "kodim23.png").size == (768, 512)

    (tmp_path / "broken.rdc").write_bytes((tmp_path / "kodim23.rdc").read_bytes()[:-1])
    result = rdc_process("decompress", "broken.rdc", "-o", "broken.png", "--model", model, cwd=tmp_path)
    line = assert_one_line_error(result)
    assert line.startswith("rdc decompress: error:")
    assert not (tmp_path / "broken.png").exists()
