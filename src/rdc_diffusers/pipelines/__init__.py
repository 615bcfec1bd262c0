from __future__ import annotations

import os

from ..hub.registration import register_with_diffusers
from .pipeline_rdc import RDCPipeline, RDCPipelineOutput
from .pipeline_rdc_refiner import RDCRefinerPipeline
from .pipeline_rdc_video import RDCVideoPipeline, RDCVideoPipelineOutput

# so DiffusionPipeline.from_pretrained resolves "_class_name": "RDCPipeline" / "RDCVideoPipeline"
register_with_diffusers(RDCPipeline)
register_with_diffusers(RDCVideoPipeline)
register_with_diffusers(RDCRefinerPipeline)

__all__ = ["RDCPipeline", "RDCPipelineOutput", "RDCRefinerPipeline", "RDCVideoPipeline", "RDCVideoPipelineOutput",
           "load_pipeline"]


PIPELINES = {"image": RDCPipeline, "video": RDCVideoPipeline, "refiner": RDCRefinerPipeline}
"""What a model name is loaded as, by what it is used for."""


def load_pipeline(model: str | os.PathLike, kind: str = "image",
                  **progress_bar_config) -> RDCPipeline | RDCVideoPipeline | RDCRefinerPipeline:
    """A bundled name, folder or Hub repo as the ``kind`` of pipeline (:data:`PIPELINES`), its progress bars set by
    ``progress_bar_config`` (diffusers' ``set_progress_bar_config``, e.g. ``disable=True``)."""
    pipe = PIPELINES[kind].from_pretrained(model)
    pipe.set_progress_bar_config(**progress_bar_config)
    return pipe
