"""The GPU kit (gpu/): the carried wheels are what the training path imports beyond the GPU machine, run.py
installs from them only what is missing, prepare measures exactly what travels and refuses (naming the largest
items) when it is over the trip's limit, the weights come back in parts that merge exactly, and the run command
trains on this CPU end to end (--device cpu, one minute) into a codec that loads, codes and decodes.
Nothing here downloads: prepare is given small files named like the wheels (--wheels-from), which it only copies
and measures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, PYTHON, load_script, python_env, random_image
from PIL import Image

from rdc_diffusers import RDCCodec
from rdc_diffusers.metrics.quality import psnr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "gpu"))
import gpukit  # noqa: E402

TRAIN_DIR, VAL_DIR = DATA_DIR / "train", DATA_DIR / "bsds_test"


def photo_folder(folder: Path, count: int, size: int = 256) -> Path:
    """``count`` photos of noise (PNG cannot compress it: all about the same size, 3 bytes a pixel)."""
    folder.mkdir(parents=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return folder


def test_weights_come_back_in_parts_under_the_limit_and_merge_exactly(tmp_path):
    from safetensors.torch import load_file, save_file

    state = {f"layer{i}.weight": torch.randn(64, 1024) for i in range(12)}  # 256 KiB each, 3 MiB in all
    save_file(state, str(tmp_path / gpukit.WEIGHTS), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text("{}")
    parts = gpukit.split_weights(tmp_path / gpukit.WEIGHTS, tmp_path / "back", limit=2 * gpukit.MIB)
    assert len(parts) == 3 and all(p.stat().st_size <= 2 * gpukit.MIB for p in parts)
    (tmp_path / "back" / "config.json").write_text("{}")
    merged = gpukit.merge_weights(tmp_path / "back", tmp_path / "merged")
    again = load_file(str(merged / gpukit.WEIGHTS))
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)
    assert (merged / "config.json").exists()
    small = gpukit.split_weights(tmp_path / gpukit.WEIGHTS, tmp_path / "whole")  # under the limit: as it was
    assert [p.name for p in small] == [gpukit.WEIGHTS]
    parts[1].unlink()
    with pytest.raises(FileNotFoundError, match="2 of 3 weight parts"):
        gpukit.merge_weights(tmp_path / "back", tmp_path / "incomplete")


def test_the_carried_wheels_are_what_the_training_path_imports_beyond_the_gpu_machine(tmp_path):
    """A Python that sees only the GPU machine's packages (gpukit.GPU_MACHINE and what they require) plus the
    carried distributions imports the whole training path (run.py's own check); without the pytorch_msssim wheel it
    cannot: compressai's __init__ imports it."""
    run = load_script("gpu/run.py")
    env = python_env(OMP_NUM_THREADS="1")

    def imports(carried, code: str) -> subprocess.CompletedProcess:
        folder = gpukit.machine_like(tmp_path / f"machine-{len(carried)}", carried)
        env["PYTHONPATH"] = os.pathsep.join([str(folder), str(ROOT / "src")])
        return subprocess.run([PYTHON, "-S", "-c", code, "codec"], env=env, capture_output=True, text=True,
                              timeout=600)

    carried = {**gpukit.WHEELS, **gpukit.RESIDUAL_WHEELS}
    result = imports(carried, run.CHECK + "import lpips\n")
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])["from"]
    assert all(str(tmp_path) in path for path in found.values()), found  # nothing came from elsewhere
    without = imports({dist: v for dist, v in carried.items() if dist != "pytorch-msssim"}, "import compressai")
    assert without.returncode != 0 and "No module named 'pytorch_msssim'" in without.stderr


def test_run_installs_from_the_carried_wheels_only_what_is_missing(tmp_path, monkeypatch):
    """A real wheel, installed with pip --no-deps --no-index --target (no network); numpy, present, is not."""
    import zipfile

    run = load_script("gpu/run.py")
    (tmp_path / "carry" / "wheels").mkdir(parents=True)
    wheel = tmp_path / "carry" / "wheels" / "kit_probe-1.0-py3-none-any.whl"
    info = "kit_probe-1.0.dist-info"
    files = {"kit_probe/__init__.py": "VALUE = 42\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: kit-probe\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    (tmp_path / "carry" / "wheels" / "numpy-0.0-py3-none-any.whl").write_bytes(b"never installed")
    monkeypatch.setattr(run, "WHEELS", {"kit-probe": None, "numpy": None})
    out = tmp_path / "out"
    out.mkdir()
    report = run.install("codec", tmp_path / "carry", tmp_path / "site", run.Log(out / "run.log"))
    assert report["installed"] == [wheel.name] and set(report["present"]) == {"numpy"}
    assert report["paths"] == [str(tmp_path / "site")]
    assert (tmp_path / "site" / "kit_probe" / "__init__.py").read_text() == "VALUE = 42\n"
    monkeypatch.setattr(run, "WHEELS", {"numpy": None})  # everything present: pip is not even called
    assert run.install("codec", tmp_path / "carry", tmp_path / "site2", run.Log(out / "run.log"))["installed"] == []
    assert not (tmp_path / "site2").exists()


def test_size_check_refuses_naming_the_largest_items_and_what_would_make_it_fit():
    prepare = load_script("gpu/prepare.py")
    mb = 10**6
    items = [("rest of the repository (100 files)", 34 * mb), ("bundled weights rdc-bsds/codec (float32)", 28 * mb),
             ("diffusers wheel", 6 * mb), ("lpips weights", 10 * mb), ("training photos (300 asked for)", 22 * mb)]
    assert prepare.size_check(items, 200 * gpukit.MIB) is None
    message = prepare.size_check(items, 64 * gpukit.MIB, droppable=["training photos (300 asked for)"])
    assert message.startswith("does not fit: 100.0 MB")
    assert ("largest items: rest of the repository (100 files) 34.0 MB, bundled weights rdc-bsds/codec (float32) "
            "28.0 MB, training photos (300 asked for) 22.0 MB, lpips weights 10.0 MB, diffusers wheel 6.0 MB"
            ) in message
    assert "without training photos (--max-images 0) the rest is 78.0 MB" in message
    assert "float16 (examples/export_fp16.py): saves about 14.0 MB (13.4 MiB) (not enough on its own)" in message
    assert "carry limit of at least 96 MiB" in message

    small = [("rest of the repository (100 files)", 30 * mb), ("training photos (300 asked for)", 40 * mb)]
    message = prepare.size_check(small, 64 * gpukit.MIB, droppable=["training photos (300 asked for)"])
    assert "fewer training photos (--max-images N)" in message and "float16" not in message


def fake_wheels(folder: Path, prepare) -> Path:
    """Files named like the wanted wheels (prepare only copies and measures them: nothing is downloaded)."""
    folder.mkdir()
    for dist, version in prepare.wanted_wheels(residual=False).items():
        (folder / f"{gpukit.normalise(dist)}-{version}-py3-none-any.whl").write_bytes(b"wheel")
    return folder


def test_prepare_carries_as_many_photos_as_the_limit_leaves_room_for(tmp_path, capsys):
    prepare = load_script("gpu/prepare.py")
    wheels = fake_wheels(tmp_path / "wheels", prepare)
    photos = photo_folder(tmp_path / "photos", 8)
    photo = max(p.stat().st_size for p in photos.iterdir())
    val = sum((photos / f"{i:02d}.png").stat().st_size for i in range(4))  # the first 4 validate
    fixed = gpukit.travelling_tree_bytes() + gpukit.folder_bytes(wheels) + val + prepare.MANIFEST_ROOM
    limit = (fixed + 5.5 * photo) / gpukit.MIB  # room for 5 of the 8 photos
    carry = tmp_path / "carry"
    common = ["--wheels-from", str(wheels), "--carry", str(carry), "--train-dir", str(photos), "--val-dir",
              str(photos), "--limit-mib", str(limit), "--margin-mib", "0"]
    assert prepare.main([*common, "--min-images", "5"]) == 0
    assert sorted(p.name for p in (carry / "val").iterdir()) == ["00.png", "01.png", "02.png", "03.png"]
    assert len(list((carry / "train").iterdir())) == 5
    manifest = json.loads((carry / "manifest.json").read_text())
    assert manifest["fits"] and manifest["train_images"] == 5 and manifest["train_images_available"] == 8
    travelling = gpukit.travelling_tree_bytes() + gpukit.folder_bytes(carry)  # exactly what the trip sends
    assert manifest["total_bytes"] <= travelling <= limit * gpukit.MIB
    assert 'carry: ["' in capsys.readouterr().out

    assert prepare.main([*common, "--max-images", "2", "--min-images", "5"]) == 0  # fewer photos, by choice
    assert len(list((carry / "train").iterdir())) == 2
    assert prepare.main([*common, "--max-images", "0"]) == 0 and not list((carry / "train").iterdir())

    capsys.readouterr()
    assert prepare.main([*common, "--min-images", "6"]) == 1  # too few photos fit: not ready
    out = capsys.readouterr().out
    assert "NOT READY TO TRAVEL: only 5 of the 8 training photos asked for fit, fewer than --min-images 6" in out
    assert "fewer training photos (--max-images N)" in out and not (carry / "train").exists()
    assert json.loads((carry / "manifest.json").read_text())["fits"] is False

    init = tmp_path / "earlier"  # an earlier result to start from travels too, and takes room from the photos
    init.mkdir()
    (init / "weights.bin").write_bytes(bytes(2 * photo))
    assert prepare.main([*common, "--min-images", "3", "--init", str(init)]) == 0
    assert (carry / "init" / "weights.bin").exists() and len(list((carry / "train").iterdir())) == 3


def test_prepare_refuses_when_the_required_items_alone_are_over_the_limit(tmp_path, capsys):
    prepare = load_script("gpu/prepare.py")
    wheels = fake_wheels(tmp_path / "wheels", prepare)
    photos = photo_folder(tmp_path / "photos", 5, size=32)
    largest = max(prepare.repository_items(), key=lambda item: item[1])
    limit = gpukit.travelling_tree_bytes() / 2 / gpukit.MIB
    code = prepare.main(["--wheels-from", str(wheels), "--carry", str(tmp_path / "carry"), "--train-dir",
                         str(photos), "--val-dir", str(photos), "--limit-mib", str(limit), "--max-images", "0"])
    out = capsys.readouterr().out
    assert code == 1 and "NOT READY TO TRAVEL: does not fit" in out
    assert f"largest items: {largest[0]} {largest[1] / 1e6:.1f} MB" in out
    assert "What would make it fit:" in out and "carry limit of at least" in out
    assert 'carry: ["' not in out


def test_run_reports_a_missing_carry_instead_of_training(tmp_path):
    result = subprocess.run([PYTHON, str(ROOT / "gpu" / "run.py"), "--device", "cpu", "--carry", str(tmp_path / "no"),
                             "--out", str(tmp_path / "out")], env=python_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    kit = json.loads((tmp_path / "out" / "kit.json").read_text())
    assert kit["status"].startswith("failed: no folder") and "gpu/prepare.py" in kit["status"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_train_rdc_with_device_cuda_stops_at_once_without_a_gpu(tmp_path):
    result = subprocess.run([PYTHON, str(ROOT / "examples" / "train_rdc.py"), "codec", "--device", "cuda",
                             "--train-dir", str(tmp_path), "--output", str(tmp_path / "run")],
                            env=python_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "--device cuda" in result.stderr


@pytest.mark.skipif(not (TRAIN_DIR.is_dir() and VAL_DIR.is_dir()), reason="needs ../shared/data/train and bsds_test")
@pytest.mark.skipif(not (gpukit.BUNDLED / "codec" / gpukit.WEIGHTS).exists(), reason="needs the bundled codec")
def test_the_run_command_trains_on_the_cpu_and_the_result_validates(tmp_path):
    """The GPU machine's command, here with --device cpu and a one-minute budget: nothing to install (the imports
    work), a warm start from the bundled codec, float32 weights back in parts, then gpu/validate.py."""
    carry = tmp_path / "carry"
    for name, sources in (("train", sorted(TRAIN_DIR.glob("*.jpg"))[:6]), ("val", sorted(VAL_DIR.glob("*.jpg"))[:4])):
        (carry / name).mkdir(parents=True)
        for path in sources:
            (carry / name / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    result = subprocess.run(
        [PYTHON, str(ROOT / "gpu" / "run.py"), "--device", "cpu", "--minutes", "1", "--carry", str(carry),
         "--out", str(out), "--batch-size", "2", "--crop-size", "64", "--log-every", "5", "--val-every", "100000"],
        env=python_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    kit = json.loads((out / "kit.json").read_text())
    assert kit["status"].startswith("done") and kit["steps"] > 0
    assert kit["install"]["installed"] == []  # everything is installed here: nothing from the wheels
    assert kit["train_args"]["device"] == "cpu" and kit["train_args"]["init"].endswith("bundled/rdc-bsds/codec")
    returned = [p for p in out.rglob("*") if p.is_file()]
    assert len(returned) <= 8 and all(p.stat().st_size < 16 * gpukit.MIB for p in returned)
    assert len(list((out / "codec").glob("*.safetensors"))) >= 2  # float32 codec: two parts
    last = kit["last_validation"]
    assert {"val_bpp_q10", "val_psnr_q50", "val_psnr_q90"} <= last.keys()

    validate = load_script("gpu/validate.py")
    results = tmp_path / "results"
    assert validate.main([str(out), "--into", str(results), "--val-dir", str(carry / "val"), "--qualities", "50"]) == 0
    report = json.loads((results / "validation.json").read_text())
    assert report["round_trip"]["psnr_fast"] > 20

    codec = RDCCodec.from_pretrained(results / "codec")
    x = torch.from_numpy(np.asarray(random_image(128, 192, seed=3), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    coded = codec.compress(x, 50.0)
    decoded = codec.decompress(coded["strings"], coded["shape"], 50.0)["x_init"]
    assert decoded.shape == x.shape and psnr(decoded, x) > 15
