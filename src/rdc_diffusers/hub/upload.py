"""What a saved or pushed model carries besides its weights: the model card, and the pipeline file that lets
``DiffusionPipeline.from_pretrained(..., custom_pipeline="pipeline", trust_remote_code=True)`` find RDCPipeline.

Uploads go through huggingface_hub (``create_repo`` + ``upload_folder``), like diffusers' own ``push_to_hub``,
but with our card: diffusers would replace README.md with a generic one fetched from (or created for) the repo.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PIPELINE_FILE = "pipeline.py"
"""diffusers' name for a custom pipeline module stored with a model (CUSTOM_PIPELINE_FILE_NAME)."""

PIPELINE_FILE_TEXT = '''"""RDCPipeline for `DiffusionPipeline.from_pretrained(<this model>, custom_pipeline="pipeline",
trust_remote_code=True)`. The components are rdc_diffusers classes, so `pip install rdc-diffusers` first."""

from rdc_diffusers.pipelines.pipeline_rdc import RDCPipeline

__all__ = ["RDCPipeline"]
'''


def write_model_files(pipe, save_directory: str | os.PathLike, model_card: str | None = None,
                      repo_id: str | None = None) -> None:
    """Add README.md (``model_card`` or one rendered from the pipeline's config) and the pipeline file."""
    from .model_card import render_card

    folder = Path(save_directory)
    if model_card is None:
        name = (repo_id or folder.resolve().name).split("/")[-1]
        model_card = render_card(name, config=dict(pipe.config), scheduler=type(pipe.scheduler).__name__,
                                 repo_id=repo_id)
    (folder / "README.md").write_text(model_card)
    (folder / PIPELINE_FILE).write_text(PIPELINE_FILE_TEXT)


def upload(folder: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool | None = None,
           commit_message: str | None = None, create_pr: bool = False):
    """Create the repo if needed and upload the folder in one commit; returns huggingface_hub's CommitInfo."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message or
                             "Upload RDCPipeline", create_pr=create_pr)


def push_to_hub(pipe, repo_id: str, *, model_card: str | None = None, token: str | None = None,
                private: bool | None = None, commit_message: str | None = None, create_pr: bool = False,
                **save_kwargs):
    """``save_pretrained`` into a temporary folder (weights, configs, card, pipeline file), then upload it."""
    with tempfile.TemporaryDirectory() as tmp:
        pipe.save_pretrained(tmp, model_card=model_card, repo_id=repo_id, **save_kwargs)
        return upload(tmp, repo_id, token=token, private=private, commit_message=commit_message, create_pr=create_pr)
