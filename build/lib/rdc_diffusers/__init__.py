"""rdc-diffusers: perceptual image compression with a latent-conditioned residual diffusion decoder."""

from .errors import RDCError, RDCFormatError, RDCModelMismatchError, UnsupportedImageError
from .models.codec import RDCCodec
from .models.residual_unet import ResidualUNet
from .pipelines.pipeline_rdc import RDCPipeline, RDCPipelineOutput

__version__ = "0.1.0"

__all__ = [
    "RDCCodec",
    "RDCError",
    "RDCFormatError",
    "RDCModelMismatchError",
    "RDCPipeline",
    "RDCPipelineOutput",
    "ResidualUNet",
    "UnsupportedImageError",
]
