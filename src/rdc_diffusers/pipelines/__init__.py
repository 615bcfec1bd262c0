from __future__ import annotations

import os

from ..hub.registration import register_with_diffusers
from .pipeline_rdc import RDCPipeline, RDCPipelineOutput
from .pipeline_rdc_video import RDCVideoPipeline, RDCVideoPipelineOutput

# so DiffusionPipeline.from_pretrained resolves "_class_name": "RDCPipeline" / "RDCVideoPipeline"
register_with_diffusers(RDCPipeline)
register_with_diffusers(RDCVideoPipeline)

__all__ = ["RDCPipeline", "RDCPipelineOutput", "RDCVideoPipeline", "RDCVideoPipelineOutput", "load_pipeline"]


def load_pipeline(model: str | os.PathLike, *, video: bool = False,
                  **progress_bar_config) -> RDCPipeline | RDCVideoPipeline:
    """A bundled name, folder or Hub repo as the image pipeline (``video=True``: the video pipeline), its progress
    bars set by ``progress_bar_config`` (diffusers' ``set_progress_bar_config``, e.g. ``disable=True``)."""
    pipe = (RDCVideoPipeline if video else RDCPipeline).from_pretrained(model)
    pipe.set_progress_bar_config(**progress_bar_config)
    return pipe
