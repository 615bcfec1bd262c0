"""Image-quality metrics. Import the ``lpips`` function from ``rdc_diffusers.metrics.lpips``: re-exporting it here
would shadow that submodule's name. The optional LPIPS packages are imported only when a model is built."""

from .lpips import lpips_model

__all__ = ["lpips_model"]
