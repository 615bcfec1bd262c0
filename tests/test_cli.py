"""The `rdc` command: compress → info → decompress, refusing to clobber files, and one-line errors."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PYTHON, Run, build_tiny_pipeline, load_pipeline, python_env, random_image, wide_gamut_profile
from diffusers import DDIMScheduler
from PIL import Image, ImageCms

from rdc_diffusers import RDCInterCodec
from rdc_diffusers.bitstream.rdc import decode_file
from rdc_diffusers.cli import main, parse_size


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
    assert "quality 50" in out  # the model's default quality, read back from the file

    code, out, _ = rdc("info", rdc_file)
    assert code == 0
    model_id = load_pipeline(tiny_model_dir).codec.fingerprint().hex()
    for expected in ("70x40", "original mode RGB", "quality:     50\n", "tiny-rdc", model_id, "seed 5", "3 steps"):
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


def test_a_text_file_named_png_is_said_not_to_be_an_image(rdc, tiny_model_dir, tmp_path):
    (tmp_path / "x.png").write_text("hello")
    line = assert_one_line_error(rdc("compress", tmp_path / "x.png", "-o", tmp_path / "x.rdc",
                                     "--model", tiny_model_dir))
    assert f"{tmp_path / 'x.png'}: not an image file" in line and "PNG, JPEG" in line
    assert "BufferedReader" not in line


def test_a_file_from_another_model_names_both(rdc, small_png, tiny_model_dir, other_model_dir, tmp_path):
    rdc_file = tmp_path / "other.rdc"
    assert rdc("compress", small_png, "-o", rdc_file, "--model", other_model_dir)[0] == 0

    line = assert_one_line_error(rdc("decompress", rdc_file, "-o", tmp_path / "out.png", "--model", tiny_model_dir))

    assert "'other-tiny-rdc'" in line and "'tiny-rdc'" in line
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("option", [
    ["--seed", "-1"], ["--seed", str(2**64)], ["--steps", "-1"], ["--steps", "x"],
    ["--quality", "100.5"], ["--quality", "-1"], ["--quality", "nan"], ["--quality", "high"],
    ["--bpp", "0"], ["--bpp", "-0.1"], ["--bpp", "inf"],
    ["--size", "20XB"], ["--size", "0"], ["--size", "-5KB"], ["--size", "0.5B"], ["--size", "KB"],
    ["--strength", "1.5"], ["--strength", "-0.5"], ["--strength", "nan"],
])
def test_out_of_range_options_are_usage_errors(small_png, tiny_model_dir, tmp_path, capsys, option):
    with pytest.raises(SystemExit) as info:
        main(["compress", str(small_png), "-o", str(tmp_path / "a.rdc"), "--model", str(tiny_model_dir), *option])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"argument {option[0]}:" in err
    assert not (tmp_path / "a.rdc").exists()


def test_strength_is_stored_by_compress_and_overridden_by_decompress(rdc, small_png, tiny_model_dir, tmp_path):
    rdc_file = tmp_path / "s.rdc"
    assert rdc("compress", small_png, "-o", rdc_file, "--model", tiny_model_dir, "--strength", "0.4").code == 0
    assert decode_file(rdc_file.read_bytes()).header.strength == 0.4
    assert "steps, strength 0.4 by default" in rdc("info", rdc_file).out

    pipe = load_pipeline(tiny_model_dir)
    for strength, expected in [(None, 0.4), ("0", 0), ("0.9", 0.9)]:
        output = tmp_path / f"{strength}.png"
        code, out, _ = rdc("decompress", rdc_file, "-o", output, "--model", tiny_model_dir,
                           *([] if strength is None else ["--strength", strength]))
        assert code == 0 and (("fast" in out) if expected == 0 else f"strength {expected:g}" in out), out
        np.testing.assert_array_equal(np.asarray(Image.open(output)), np.asarray(
            pipe.decompress(rdc_file.read_bytes(), strength=expected).images[0]))
    run = rdc("decompress", rdc_file, "-o", tmp_path / "x.png", "--model", tiny_model_dir, "--fast", "--strength", "1")
    assert "leave out --strength" in assert_one_line_error(run)


# --- the rate: --quality, or rate control with --bpp / --size ------------------------------------------------
# The tiny random model writes ~110 bytes for a 128x96 image at qualities up to ~80 and ~230 at 100.


@pytest.fixture
def png_128x96(tmp_path) -> Path:
    path = tmp_path / "img.png"
    random_image(96, 128).save(path)
    return path


def reported(out: str) -> dict:
    """The numbers of a compress line: ``OUT: N bytes, B bpp (WxH), quality Q``."""
    match = re.search(r"(\d+) bytes, ([\d.]+) bpp \((\d+)x(\d+)\), quality ([\d.]+)", out)
    assert match, out
    return {"bytes": int(match[1]), "bpp": float(match[2]), "quality": float(match[5])}


def test_quality_round_trip_is_shown_by_info(rdc, png_128x96, tiny_model_dir, tmp_path):
    rdc_file = tmp_path / "q.rdc"
    code, out, _ = rdc("compress", png_128x96, "-o", rdc_file, "--model", tiny_model_dir, "--quality", "92.25")
    assert code == 0 and reported(out)["quality"] == 92.25 and "rate control" not in out

    data = rdc_file.read_bytes()
    assert decode_file(data).header.quality == 92.25
    assert "quality:     92.25\n" in rdc("info", rdc_file).out
    same = load_pipeline(tiny_model_dir).compress(Image.open(png_128x96), quality=92.25)
    assert data == same
    assert data != load_pipeline(tiny_model_dir).compress(Image.open(png_128x96))  # not the default quality
    assert rdc("decompress", rdc_file, "-o", tmp_path / "q.png", "--model", tiny_model_dir, "--fast").code == 0


@pytest.mark.parametrize("bpp", ["0.08", "0.1", "0.13"])
def test_bpp_never_writes_a_file_above_the_target(rdc, png_128x96, tiny_model_dir, tmp_path, bpp):
    rdc_file = tmp_path / "r.rdc"
    code, out, _ = rdc("compress", png_128x96, "-o", rdc_file, "--model", tiny_model_dir, "--bpp", bpp)
    assert code == 0

    size = rdc_file.stat().st_size
    assert 8 * size / (128 * 96) <= float(bpp)
    shown = reported(out)
    assert shown["bytes"] == size and shown["bpp"] == round(8 * size / (128 * 96), 4)
    assert shown["quality"] == decode_file(rdc_file.read_bytes()).header.quality
    assert shown["quality"] > 50  # the default quality's file fits with room to spare: the search went higher
    assert f"(rate control: <= {bpp} bpp)" in out


def test_parse_size_units():
    sizes = {"20000": 20000, "20KB": 20000, "20kB": 20000, "20kb": 20000, "1.5MB": 1_500_000, "20KiB": 20480,
             "2 MiB": 2 * 2**20, "1GB": 10**9, "150B": 150, "0.15KB": 150, ".5KiB": 512, "10.9": 10}
    assert {text: parse_size(text) for text in sizes} == sizes
    for bad in ("20XB", "KB", "-1KB", "0", "0.4B", "1e3", "20 K B", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


@pytest.mark.parametrize(("size", "budget"), [("150B", 150), ("0.15kB", 150), ("0.5KiB", 512)])
def test_size_with_units_is_a_byte_budget(rdc, png_128x96, tiny_model_dir, tmp_path, size, budget):
    rdc_file = tmp_path / "s.rdc"
    code, out, _ = rdc("compress", png_128x96, "-o", rdc_file, "--model", tiny_model_dir, "--size", size)
    assert code == 0
    assert reported(out)["bytes"] == rdc_file.stat().st_size <= budget
    assert f"(rate control: <= {budget} bytes)" in out
    if budget == 512:  # more than the highest quality needs
        assert reported(out)["quality"] == 100


@pytest.mark.parametrize("target", [["--size", "10B"], ["--bpp", "0.01"]])
def test_an_unreachable_target_is_a_clear_error_and_writes_nothing(rdc, png_128x96, tiny_model_dir, tmp_path,
                                                                   target):
    line = assert_one_line_error(rdc("compress", png_128x96, "-o", tmp_path / "x.rdc", "--model", tiny_model_dir,
                                     *target))
    smallest = len(load_pipeline(tiny_model_dir).compress(Image.open(png_128x96), quality=0))
    assert line.startswith("rdc compress: error:") and "img.png" in line
    assert f"even the lowest quality (0) gives {smallest} bytes" in line and "nothing written" in line
    assert not (tmp_path / "x.rdc").exists()


def test_a_folder_gets_one_search_per_image_and_skips_what_cannot_fit(tiny_model_dir, tmp_path, capsys):
    folder, out = tmp_path / "images", tmp_path / "rdc"
    folder.mkdir()
    big, small = random_image(96, 128), random_image(64, 64, seed=1)
    big.save(folder / "big.png")
    small.save(folder / "small.png")
    pipe = load_pipeline(tiny_model_dir)
    big_min, big_max = (len(pipe.compress(big, quality=q)) for q in (0, 100))
    small_max = len(pipe.compress(small, quality=100))
    assert small_max < big_min and big_max > 150 >= small_max  # what makes this folder a test

    assert main(["compress", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--size", "150B"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(p.stat().st_size <= 150 for p in out.iterdir()) and len(lines) == 3
    qualities = {Path(line.split(":")[0]).name: reported(line)["quality"] for line in lines[:2]}
    assert qualities["small.rdc"] == 100 and qualities["big.rdc"] < 100  # each image its own quality
    assert qualities == {p.name: decode_file(p.read_bytes()).header.quality for p in out.iterdir()}

    budget = big_min - 1  # small.png fits, big.png cannot
    code = main(["compress", str(folder), "-o", str(tmp_path / "rdc2"), "--model", str(tiny_model_dir),
                 "--size", str(budget)])
    stdout, stderr = capsys.readouterr()
    assert code == 1 and "Traceback" not in stderr
    assert [p.name for p in (tmp_path / "rdc2").iterdir()] == ["small.rdc"]  # nothing written for big.png
    assert f"small.rdc: {small_max} bytes" in stdout and f"1 file, {small_max} bytes" in stdout
    errors = stderr.strip().splitlines()
    assert len(errors) == 2
    assert f"big.png: even the lowest quality (0) gives {big_min} bytes" in errors[0]
    assert "nothing written" in errors[0]
    assert errors[1] == (f"rdc compress: error: 1 of 2 images cannot meet the rate target (<= {budget} bytes); "
                         "nothing written for them")


@pytest.mark.parametrize("options", [["--quality", "50", "--bpp", "0.1"], ["--quality", "50", "--size", "2KB"],
                                     ["--bpp", "0.1", "--size", "2KB"]])
def test_quality_bpp_and_size_exclude_each_other(small_png, tiny_model_dir, tmp_path, capsys, options):
    with pytest.raises(SystemExit) as info:
        main(["compress", str(small_png), "-o", str(tmp_path / "a.rdc"), "--model", str(tiny_model_dir), *options])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not (tmp_path / "a.rdc").exists()


@pytest.fixture(scope="module")
def tiny_video_dir(tmp_path_factory) -> Path:
    """An image model with an inter codec (coding clips at its one quality, 50), the bundled model's layout."""
    path = tmp_path_factory.mktemp("models") / "tiny-rdc"
    build_tiny_pipeline().save_pretrained(path)
    RDCInterCodec(N=8, M=8).save_pretrained(path / "inter_codec")
    return path


def test_compress_video_takes_only_the_model_s_video_quality(rdc, tiny_video_dir, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        random_image(48, 64, seed=i).save(frames / f"f{i}.png")

    line = assert_one_line_error(rdc("compress-video", frames, "-o", tmp_path / "a.rdcv", "--model", tiny_video_dir,
                                     "--quality", "40"))
    assert line.startswith("rdc compress-video: error:") and "quality 50 only" in line
    assert not (tmp_path / "a.rdcv").exists()

    code, out, _ = rdc("compress-video", frames, "-o", tmp_path / "a.rdcv", "--model", tiny_video_dir,
                       "--quality", "50")
    assert code == 0 and "quality 50)" in out


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


def test_a_folder_of_rdc_files_decompresses_into_a_folder(rdc, tiny_model_dir, tmp_path):
    images, coded, decoded = tmp_path / "images", tmp_path / "coded", tmp_path / "decoded"
    images.mkdir()
    for name, seed in (("a", 0), ("b", 1)):
        random_image(24, 40, seed=seed).save(images / f"{name}.png")
    assert rdc("compress", images, "-o", coded, "--model", tiny_model_dir)[0] == 0

    code, out, _ = rdc("decompress", coded, "-o", decoded, "--model", tiny_model_dir, "--steps", 1)

    assert code == 0
    assert out.splitlines() == [f"{decoded / 'a.png'}: 40x24 RGB, refined, 1 step of DDIMScheduler, strength 1",
                                f"{decoded / 'b.png'}: 40x24 RGB, refined, 1 step of DDIMScheduler, strength 1",
                                "2 files (1 process)"]
    pipe = load_pipeline(tiny_model_dir)
    for name in ("a", "b"):  # what the API decodes from the same bytes
        expected = pipe.decompress((coded / f"{name}.rdc").read_bytes(), num_inference_steps=1).images[0]
        np.testing.assert_array_equal(np.asarray(Image.open(decoded / f"{name}.png")), np.asarray(expected))

    line = assert_one_line_error(rdc("decompress", coded, "-o", decoded, "--model", tiny_model_dir, "--fast"))
    assert "a.png already exists" in line and "--force" in line
    assert rdc("decompress", coded, "-o", decoded, "--model", tiny_model_dir, "--fast", "--force")[0] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(decoded / "b.png")), np.asarray(
        pipe.decompress((coded / "b.rdc").read_bytes(), refine=False).images[0]))

    (coded / "c.rdc").write_bytes(b"RDC? no")  # one broken file: nothing is decoded, and it is named
    line = assert_one_line_error(rdc("decompress", coded, "-o", tmp_path / "fresh", "--model", tiny_model_dir))
    assert "c.rdc" in line and not (tmp_path / "fresh").exists()
    line = assert_one_line_error(rdc("decompress", images, "-o", tmp_path / "none", "--model", tiny_model_dir))
    assert "no .rdc files" in line


def test_an_existing_folder_as_output_gets_the_file_inside(rdc, small_png, tiny_model_dir, tmp_path):
    """As with a folder input, a file goes into an output folder as <stem>.rdc / <stem>.png (no [Errno 21])."""
    folder = tmp_path / "out"
    folder.mkdir()
    for force in ([], ["--force"]):  # --force: the file inside is overwritten, never the folder
        code, out, err = rdc("compress", small_png, "-o", folder, "--model", tiny_model_dir, *force)
        assert code == 0 and out.startswith(f"{folder / 'small.rdc'}: ") and not err
    line = assert_one_line_error(rdc("compress", small_png, "-o", folder, "--model", tiny_model_dir))
    assert f"{folder / 'small.rdc'} already exists" in line
    for force in ([], ["--force"]):
        code, out, _ = rdc("decompress", folder / "small.rdc", "-o", folder, "--model", tiny_model_dir, "--fast",
                           *force)
        assert code == 0 and out.startswith(f"{folder / 'small.png'}: 70x40 RGB, fast")
    assert sorted(p.name for p in folder.iterdir()) == ["small.png", "small.rdc"]


def test_an_animated_gif_gets_one_warning_line(rdc, tiny_model_dir, tmp_path):
    first, *rest = (random_image(24, 32, seed=i) for i in range(3))
    first.save(tmp_path / "anim.gif", save_all=True, append_images=rest)

    code, out, err = rdc("compress", tmp_path / "anim.gif", "-o", tmp_path / "anim.rdc", "--model", tiny_model_dir)

    assert code == 0 and "anim.rdc" in out
    assert err.splitlines() == [f"rdc compress: warning: {tmp_path / 'anim.gif'} has 3 frames; only frame 1 is coded "
                                "(a clip: rdc compress-video, which reads GIFs, videos and frame folders; "
                                "RDCVideoPipeline in Python)"]


def test_one_step_and_one_file_are_singular(rdc, small_png, tiny_model_dir, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    small_png.rename(folder / "small.png")
    code, out, _ = rdc("compress", folder, "-o", tmp_path / "coded", "--model", tiny_model_dir, "--steps", 1)
    assert code == 0 and "\n1 file, " in out
    assert "seed 0, 1 step, strength 1 by default" in rdc("info", tmp_path / "coded" / "small.rdc").out
    code, out, _ = rdc("decompress", tmp_path / "coded" / "small.rdc", "-o", tmp_path / "a.png", "--model",
                       tiny_model_dir)
    assert code == 0 and out.endswith("refined, 1 step of DDIMScheduler, strength 1\n")


@pytest.mark.parametrize(("steps", "message"), [
    (2000, "num_inference_steps must be in 0..1000 (the scheduler's num_train_timesteps), got 2000"),
    (101, "above the 100 steps decoders accept from a file by default"),
])
def test_compress_refuses_steps_its_decoders_would_refuse(rdc, small_png, tiny_model_dir, tmp_path, steps, message):
    line = assert_one_line_error(rdc("compress", small_png, "-o", tmp_path / "a.rdc", "--model", tiny_model_dir,
                                     "--steps", steps))
    assert line.startswith("rdc compress: error:") and message in line
    assert not (tmp_path / "a.rdc").exists()


def test_decompress_refuses_steps_beyond_the_scheduler_before_decoding(rdc, small_png, tiny_model_dir, tmp_path):
    assert rdc("compress", small_png, "-o", tmp_path / "a.rdc", "--model", tiny_model_dir)[0] == 0
    line = assert_one_line_error(rdc("decompress", tmp_path / "a.rdc", "-o", tmp_path / "a.png", "--model",
                                     tiny_model_dir, "--steps", 2000))
    assert line == ("rdc decompress: error: --steps 2000: num_inference_steps must be in 0..1000 (the scheduler's "
                    "num_train_timesteps), got 2000")
    assert not (tmp_path / "a.png").exists()


def test_progress_bars_show_on_a_terminal_only(rdc, tmp_path, tiny_video_dir, monkeypatch):
    """Frames are counted on a terminal; piped or redirected output stays clean."""
    import io

    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        random_image(32, 48, seed=k).save(frames / f"f{k}.png")
    code, _, err = rdc("compress-video", frames, "-o", tmp_path / "a.rdcv", "--model", tiny_video_dir)
    assert code == 0 and "it/s" not in err and "it [" not in err  # capsys' stderr is not a terminal

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["compress-video", str(frames), "-o", str(tmp_path / "b.rdcv"), "--model", str(tiny_video_dir)]) == 0
    assert re.search(r"\dit \[", terminal.getvalue())  # a frame count (a stream has no length to show)


def test_the_colour_space_goes_from_the_image_through_the_file_to_every_decode(rdc, tiny_model_dir, tmp_path):
    """A photo in Display P3: decoded without its profile it would be shown as sRGB."""
    profile = wide_gamut_profile()
    image = random_image(24, 40)
    (tmp_path / "in").mkdir()
    image.save(tmp_path / "in" / "p3.png", icc_profile=profile)
    random_image(24, 40).save(tmp_path / "in" / "srgb.png")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    random_image(24, 40).save(tmp_path / "in" / "tagged_srgb.png", icc_profile=srgb)
    assert rdc("compress", tmp_path / "in", "-o", tmp_path / "coded", "--model", tiny_model_dir)[0] == 0
    plain, tagged = (tmp_path / "coded" / "srgb.rdc").read_bytes(), (tmp_path / "coded" / "p3.rdc").read_bytes()
    assert len(tagged) > len(plain)  # the profile is in the file, and counted in its bits
    assert (tmp_path / "coded" / "tagged_srgb.rdc").read_bytes() == plain  # sRGB is what untagged means: no bits

    assert rdc("decompress", tmp_path / "coded", "-o", tmp_path / "out", "--model", tiny_model_dir, "--fast")[0] == 0
    for output in ("p3.jpg", "p3.webp"):
        assert rdc("decompress", tmp_path / "coded" / "p3.rdc", "-o", tmp_path / output, "--model", tiny_model_dir,
                   "--fast")[0] == 0
    for written in (tmp_path / "out" / "p3.png", tmp_path / "p3.jpg", tmp_path / "p3.webp"):
        with Image.open(written) as decoded:
            assert decoded.info.get("icc_profile") == profile, written
    with Image.open(tmp_path / "out" / "srgb.png") as decoded:
        assert "icc_profile" not in decoded.info
    assert "ICC profile" in rdc("info", tmp_path / "coded" / "p3.rdc")[1]
