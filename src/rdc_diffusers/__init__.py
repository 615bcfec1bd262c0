"""rdc-diffusers: perceptual image and video compression with a latent-conditioned residual diffusion decoder."""

from .errors import (
    DecompressionBombError,
    RateTargetError,
    RDCError,
    RDCFormatError,
    RDCModelMismatchError,
    UnsupportedImageError,
    UnsupportedVideoError,
)
from .models.codec import RDCCodec
from .models.inter_codec import RDCInterCodec
from .models.residual_unet import ResidualUNet
from .pipelines.pipeline_rdc import RDCPipeline, RDCPipelineOutput
from .pipelines.pipeline_rdc_video import RDCVideoPipeline, RDCVideoPipelineOutput

__version__ = "0.3.0"

__all__ = [
    "DecompressionBombError",
    "RDCCodec",
    "RDCError",
    "RDCFormatError",
    "RDCInterCodec",
    "RDCModelMismatchError",
    "RDCPipeline",
    "RDCPipelineOutput",
    "RDCVideoPipeline",
    "RDCVideoPipelineOutput",
    "RateTargetError",
    "ResidualUNet",
    "UnsupportedImageError",
    "UnsupportedVideoError",
]
