"""Loading by Hub repo id, offline, from a Hugging Face cache laid out exactly as huggingface_hub lays it out."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from huggingface_hub import scan_cache_dir

REPO_ID = "rdc-test/tiny-rdc"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fill_hub_cache(cache: Path, model_dir: Path) -> Path:
    """models--org--name/{blobs/<sha256>, snapshots/<commit>/<path> -> ../../blobs/<sha256>, refs/main}."""
    repo = cache / ("models--" + REPO_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    for file in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / file.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return repo


def test_cache_layout_is_what_huggingface_hub_reads(tmp_path, tiny_model_dir):
    fill_hub_cache(tmp_path / "hub", tiny_model_dir)
    info = scan_cache_dir(tmp_path / "hub")
    assert [r.repo_id for r in info.repos] == [REPO_ID]
    assert not info.warnings
    assert {rev.commit_hash for r in info.repos for rev in r.revisions} == {COMMIT}


def test_from_pretrained_by_repo_id_offline(tmp_path, tiny_model_dir, tiny_pipeline):
    """A fresh process with HF_HUB_OFFLINE=1 loads the repo id from the cache and decodes a file bit-exactly."""
    fill_hub_cache(tmp_path / "hub", tiny_model_dir)
    data = tiny_pipeline.compress(np.full((20, 30, 3), 128, dtype=np.uint8))
    (tmp_path / "x.rdc").write_bytes(data)
    expected = tiny_pipeline.decompress(data, refine=False, output_type="np").images
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
import numpy as np
from rdc_diffusers import RDCPipeline
pipe = RDCPipeline.from_pretrained({REPO_ID!r})
out = pipe.decompress(open({str(tmp_path / "x.rdc")!r}, "rb").read(), refine=False, output_type="np").images
assert np.array_equal(out, np.load({str(tmp_path / "expected.npy")!r}))
print("name:", pipe.model_name)
"""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"name: {REPO_ID}" in result.stdout
