"""Loading by Hub repo id, offline, from a Hugging Face cache laid out exactly as huggingface_hub lays it out."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard, scan_cache_dir

from rdc_diffusers import RDCPipeline

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


# --- pushing: huggingface_hub's network calls are intercepted, everything before them runs for real ----------------


class FakeHub:
    """Stands in for HfApi.create_repo / upload_folder and keeps a copy of each uploaded folder."""

    def __init__(self, tmp_path: Path):
        self.tmp_path, self.repos, self.uploads = tmp_path, [], []

    def create_repo(self, api, repo_id, **kwargs):
        from huggingface_hub import RepoUrl

        self.repos.append((repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, api, *, repo_id, folder_path, **kwargs):
        from huggingface_hub import CommitInfo

        copy = self.tmp_path / f"upload{len(self.uploads)}" / repo_id.split("/")[-1]
        shutil.copytree(folder_path, copy)  # the folder may be temporary
        self.uploads.append({"repo_id": repo_id, "folder": copy, **kwargs})
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}",
                          commit_message=kwargs.get("commit_message", ""), commit_description="", oid=COMMIT)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    from huggingface_hub import HfApi

    hub = FakeHub(tmp_path)
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: hub.create_repo(api, repo_id, **kw))
    monkeypatch.setattr(HfApi, "upload_folder", lambda api, **kw: hub.upload_folder(api, **kw))
    monkeypatch.setattr(HfApi, "preupload_lfs_files", lambda *a, **kw: pytest.fail("network call: preupload"))
    monkeypatch.setattr(HfApi, "create_commit", lambda *a, **kw: pytest.fail("network call: create_commit"))
    return hub


def uploaded_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def check_uploaded_model(folder: Path, tiny_pipeline, repo_id: str) -> None:
    """Weights, configs, the model card and pipeline.py, and the upload decodes files of the original bit-exactly."""
    assert {"model_index.json", "README.md", "pipeline.py", "codec/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"} <= uploaded_files(folder)
    card = ModelCard.load(folder / "README.md")
    assert (card.data.library_name, card.data.pipeline_tag, card.data.license) == ("diffusers", "image-to-image",
                                                                                    "apache-2.0")
    assert f'RDCPipeline.from_pretrained("{repo_id}")' in card.text
    data = tiny_pipeline.compress(np.full((20, 30, 3), 90, dtype=np.uint8))
    loaded = RDCPipeline.from_pretrained(folder)
    assert np.array_equal(loaded.decompress(data, output_type="np").images,
                          tiny_pipeline.decompress(data, output_type="np").images)


def test_push_to_hub_uploads_weights_and_model_card(fake_hub, tiny_pipeline):
    commit = tiny_pipeline.push_to_hub("rdc-test/pushed", private=True, commit_message="first")
    assert commit.oid == COMMIT
    assert fake_hub.repos == [("rdc-test/pushed", {"private": True, "exist_ok": True})]
    [upload] = fake_hub.uploads
    assert (upload["repo_id"], upload["commit_message"]) == ("rdc-test/pushed", "first")
    check_uploaded_model(upload["folder"], tiny_pipeline, "rdc-test/pushed")


def test_save_pretrained_with_push_to_hub_uploads_what_it_saved(fake_hub, tiny_pipeline, tmp_path):
    card = "---\nlicense: apache-2.0\nlibrary_name: diffusers\npipeline_tag: image-to-image\n---\n\n# mine\n" \
           'RDCPipeline.from_pretrained("rdc-test/saved")\n'
    tiny_pipeline.save_pretrained(tmp_path / "saved", push_to_hub=True, repo_id="rdc-test/saved", model_card=card)
    [upload] = fake_hub.uploads
    assert upload["repo_id"] == "rdc-test/saved"
    assert uploaded_files(upload["folder"]) == uploaded_files(tmp_path / "saved")
    assert (upload["folder"] / "README.md").read_text() == card
    check_uploaded_model(upload["folder"], tiny_pipeline, "rdc-test/saved")


def test_diffusers_only_code_loads_the_repo_with_custom_pipeline(tmp_path, tiny_model_dir):
    """A script that imports only diffusers: custom_pipeline="pipeline" + trust_remote_code, offline from the cache."""
    fill_hub_cache(tmp_path / "hub", tiny_model_dir)
    script = f"""
import sys
from diffusers import DiffusionPipeline
assert "rdc_diffusers" not in sys.modules
pipe = DiffusionPipeline.from_pretrained({REPO_ID!r}, custom_pipeline="pipeline", trust_remote_code=True)
print(type(pipe).__module__, type(pipe).__name__)
"""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "rdc_diffusers.pipelines.pipeline_rdc RDCPipeline" in result.stdout
