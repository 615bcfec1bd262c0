"""RDCPipeline for `DiffusionPipeline.from_pretrained(<this model>, custom_pipeline="pipeline",
trust_remote_code=True)`. The components are rdc_diffusers classes, so `pip install rdc-diffusers` first."""

from rdc_diffusers.pipelines.pipeline_rdc import RDCPipeline

__all__ = ["RDCPipeline"]
