"""Loading that refuses a folder missing some of the model's weights, for every model class of the package."""

from __future__ import annotations

from ..errors import IncompatibleModelError


class CompleteWeightsMixin:
    """``from_pretrained`` that raises :class:`~rdc_diffusers.errors.IncompatibleModelError` when the folder lacks
    some of the class's weights (saved by an older release, before a layer existed: the single-rate codec before the
    rate gains, a unet before the quality embedding). diffusers only warns and keeps those weights at their random
    initialisation: a model that decodes garbage under a fingerprint no file matches. Put it before ``ModelMixin``.
    """

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        with_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if info["missing_keys"]:
            missing = sorted(info["missing_keys"])
            names = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise IncompatibleModelError(
                f"{args[0] if args else 'the model folder'} has no weights for {len(missing)} of {cls.__name__}'s "
                f"tensors ({names}): it was saved by an older rdc-diffusers. Warm-start from it instead "
                f"(rdc_diffusers.training.warm_start, or examples/train_rdc.py --init)")
        return (model, info) if with_info else model
