"""rdc-diffusers: perceptual image and video compression with a latent-conditioned residual diffusion decoder.

The models and pipelines (torch, diffusers and compressai: seconds to import) load on first use, as in diffusers'
own ``_LazyModule``, so that ``import rdc_diffusers``, ``rdc --help`` and ``rdc info`` start in a fraction of that.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from .errors import (
    DecompressionBombError,
    IncompatibleModelError,
    RateTargetError,
    RDCError,
    RDCFormatError,
    RDCModelMismatchError,
    UnsupportedImageError,
    UnsupportedSchedulerError,
    UnsupportedVideoError,
)
from .hub.registration import register_when_diffusers_loads

__version__ = "0.3.0"

_LAZY = {
    "BaseCodec": ".models.base_codec",
    "RDCCodec": ".models.codec",
    "RDCInterCodec": ".models.inter_codec",
    "ResidualUNet": ".models.residual_unet",
    "RDCPipeline": ".pipelines.pipeline_rdc",
    "RDCPipelineOutput": ".pipelines.pipeline_rdc",
    "RDCRefinerPipeline": ".pipelines.pipeline_rdc_refiner",
    "RDCVideoPipeline": ".pipelines.pipeline_rdc_video",
    "RDCVideoPipelineOutput": ".pipelines.pipeline_rdc_video",
}
"""The public names that need torch, each with the module that defines it."""

if TYPE_CHECKING:
    from .models.base_codec import BaseCodec
    from .models.codec import RDCCodec
    from .models.inter_codec import RDCInterCodec
    from .models.residual_unet import ResidualUNet
    from .pipelines.pipeline_rdc import RDCPipeline, RDCPipelineOutput
    from .pipelines.pipeline_rdc_refiner import RDCRefinerPipeline
    from .pipelines.pipeline_rdc_video import RDCVideoPipeline, RDCVideoPipelineOutput


def __getattr__(name: str) -> Any:
    """Import a public class, or a submodule (``rdc_diffusers.models``, as eager imports used to provide), on first
    use; later lookups find it in the module's namespace."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The lazy names too, so ``dir()`` and tab completion show the whole API before it is imported."""
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BaseCodec",
    "DecompressionBombError",
    "IncompatibleModelError",
    "RDCCodec",
    "RDCError",
    "RDCFormatError",
    "RDCInterCodec",
    "RDCModelMismatchError",
    "RDCPipeline",
    "RDCPipelineOutput",
    "RDCRefinerPipeline",
    "RDCVideoPipeline",
    "RDCVideoPipelineOutput",
    "RateTargetError",
    "ResidualUNet",
    "UnsupportedImageError",
    "UnsupportedSchedulerError",
    "UnsupportedVideoError",
]

# Importing rdc_diffusers has always registered RDCPipeline with diffusers (docs/hub.md); now that needs diffusers
# imported too, in either order. Last: it may import .pipelines, which needs this module complete.
register_when_diffusers_loads()
