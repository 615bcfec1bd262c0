from .codec import RDCCodec
from .residual_unet import ResidualUNet

__all__ = ["RDCCodec", "ResidualUNet"]
