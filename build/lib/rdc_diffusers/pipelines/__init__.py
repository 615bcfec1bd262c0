from .pipeline_rdc import RDCPipeline, RDCPipelineOutput

__all__ = ["RDCPipeline", "RDCPipelineOutput"]
