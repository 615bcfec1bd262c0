from .base_codec import BaseCodec
from .codec import RDCCodec
from .inter_codec import RDCInterCodec
from .residual_unet import ResidualUNet

__all__ = ["BaseCodec", "RDCCodec", "RDCInterCodec", "ResidualUNet"]
