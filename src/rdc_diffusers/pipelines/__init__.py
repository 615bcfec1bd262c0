from ..hub import register_with_diffusers
from .pipeline_rdc import RDCPipeline, RDCPipelineOutput

register_with_diffusers(RDCPipeline)  # so DiffusionPipeline.from_pretrained resolves "_class_name": "RDCPipeline"

__all__ = ["RDCPipeline", "RDCPipelineOutput"]
