from ..hub import register_with_diffusers
from .pipeline_rdc import RDCPipeline, RDCPipelineOutput
from .pipeline_rdc_video import RDCVideoPipeline, RDCVideoPipelineOutput

# so DiffusionPipeline.from_pretrained resolves "_class_name": "RDCPipeline" / "RDCVideoPipeline"
register_with_diffusers(RDCPipeline)
register_with_diffusers(RDCVideoPipeline)

__all__ = ["RDCPipeline", "RDCPipelineOutput", "RDCVideoPipeline", "RDCVideoPipelineOutput"]
