"""The residual refinement both pipelines share, and the denoising loop the trainer runs too.

One loop (:func:`denoising_loop`) takes the residual from r_T towards r_0 with any diffusers scheduler; the image
and video pipelines reach it through :class:`ResidualRefinementMixin`, ``examples/train_rdc.py`` directly, so the
trajectories the UNet is trained on are the ones it meets at decode time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..hub.pretrained import warn_if_slow_on_cpu
from ..schedulers import ChecksScheduler, adapt_scheduler, alpha_bar, convert_prediction

__all__ = ["ResidualRefinementMixin", "denoising_loop"]


def denoising_loop(unet, scheduler, residual: torch.Tensor, timesteps: Iterable, cond: dict, *,
                   step_kwargs: dict | None = None,
                   on_step: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Run ``scheduler`` over ``timesteps`` from the scaled residual ``residual``; returns the last ``prev_sample``.

    ``cond`` is what the UNet is conditioned on (``x_init``, ``y_hat``, ``quality``). The UNet's prediction is
    converted to the one the scheduler takes (:func:`~rdc_diffusers.schedulers.convert_prediction`).
    ``on_step(i, t, residual)`` runs after each step and returns the residual to go on with.
    """
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(residual, t)
        model_output = convert_prediction(unet(model_input, t, **cond).sample, model_input, alpha_bar(scheduler, t),
                                          unet.config.prediction_type, scheduler.config.prediction_type)
        residual = scheduler.step(model_output, t, residual, **(step_kwargs or {})).prev_sample
        if on_step is not None:
            residual = on_step(i, t, residual)
    return residual


class ResidualRefinementMixin(ChecksScheduler):
    """For a pipeline with a ``unet`` ([`ResidualUNet`]) and a ``scheduler``: sample the residual of a decoded
    image and add it (:meth:`denoise`). The scheduler is checked when it is assigned (``ChecksScheduler``)."""

    _callback_tensor_inputs = ["residual"]

    def prepare_scheduler(self) -> None:
        """Assignment already checked the scheduler (``ChecksScheduler``); check again at each call, as its config
        may have changed since (``register_to_config(prediction_type=...)``)."""
        self.scheduler = adapt_scheduler(self.scheduler)

    def prepare_extra_step_kwargs(self, generator: torch.Generator | None, eta: float) -> dict:
        # Only DDIM takes eta, and not every scheduler takes a generator.
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        extra = {"eta": eta, "generator": generator}
        return {k: v for k, v in extra.items() if k in accepted}

    @torch.no_grad()
    def denoise(
        self,
        x_init: torch.Tensor,
        y_hat: torch.Tensor,
        quality: float,
        *,
        num_inference_steps: int,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        eta: float = 0.0,
        progress: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["residual"],  # noqa: B006 (diffusers' signature)
    ) -> torch.Tensor:
        """Sample the residual given the decoded ``x_init``, ``ŷ`` and the quality: returns ``x_init + r``
        (not clamped).

        ``noise`` is the starting r_T (unit Gaussian, the shape of ``x_init``); by default it is drawn from
        ``generator``. The video pipeline passes its own to keep the noise consistent across frames, and a tiled
        decode crops of one image-sized draw (then its progress bar counts tiles, and ``progress=False`` keeps
        this one quiet). ``callback_on_step_end(pipe, i, t, {"residual": r_t})`` may return a replacement.
        """
        self.prepare_scheduler()
        device, dtype = self._execution_device, self.unet.dtype
        warn_if_slow_on_cpu(device, dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if noise is None:
            noise = randn_tensor(x_init.shape, generator=generator, device=device, dtype=dtype)
        cond = {"x_init": x_init.to(device, dtype), "y_hat": y_hat.to(device, dtype), "quality": quality}

        def on_step(i: int, t: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
            tensors = {"residual": residual} if "residual" in callback_on_step_end_tensor_inputs else {}
            return (callback_on_step_end(self, i, t, tensors) or {}).get("residual", residual)

        timesteps = self.scheduler.timesteps
        residual = denoising_loop(self.unet, self.scheduler, noise.to(device, dtype) * self.scheduler.init_noise_sigma,
                                  self.progress_bar(timesteps) if progress else timesteps, cond,
                                  step_kwargs=self.prepare_extra_step_kwargs(generator, eta),
                                  on_step=None if callback_on_step_end is None else on_step)
        return self.unet.base(x_init.to(device)) + residual.float() / self.unet.config.residual_scale
