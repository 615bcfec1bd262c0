"""Which diffusers schedulers refine with the residual UNet, by what short name, and how its prediction reaches them.

The UNet is trained on the variance-preserving process of its scheduler config: ``r_t = √ᾱ_t·r_0 + √(1−ᾱ_t)·ε`` at
integer timesteps ``t``, predicting ``r_0`` (``prediction_type="sample"``). Every diffusers scheduler that shows the
model that process — the DDPM family directly, the k-diffusion family (Euler, Heun, LMS, KDPM2, …) after its
``scale_model_input`` divides ``r_0 + σ·ε`` by ``√(σ²+1)``, at a fractional ``t`` — can sample with it, if it is handed
the prediction it implements. Not every scheduler implements ``"sample"`` (Euler ancestral and KDPM2 do not),
so, as diffusers pipelines convert between parametrisations, :func:`convert_prediction` turns the UNet's output
into ε or v given ᾱ at ``t``. v is preferred to ε where a scheduler takes it: recovering r_0 from ε divides by
√ᾱ, which is ~3e-5 at t = 999 of the cosine schedule, while v is well conditioned at every t.

Refused, with :class:`~rdc_diffusers.errors.UnsupportedSchedulerError`: schedulers of other processes (EDM's
preconditioning, flow matching, VE score SDEs, discrete/masked token schedulers, inversion, consistency
models); the second-order k-diffusion samplers Heun and KDPM2 (see :data:`REFUSED`); DPMSolverSDE when
``torchsde`` is not installed. The pipelines check a scheduler when it is assigned (:class:`ChecksScheduler`), and
``pipe.scheduler.compatibles`` lists the supported ones. ``tests/test_schedulers.py`` runs every scheduler class
diffusers exports.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from .errors import UnsupportedSchedulerError

if TYPE_CHECKING:  # torch is imported where it is used, so the CLI can list the names without it
    from torch import Tensor

__all__ = ["REFUSED", "SCHEDULERS", "TEMPORAL_NOISE", "ChecksScheduler", "adapt_scheduler", "alpha_bar",
           "available_schedulers", "check_scheduler", "convert_prediction", "load_scheduler", "scheduler_name",
           "supported_scheduler", "use_scheduler"]

SCHEDULERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ddim": ("DDIMScheduler", ("sample", "v_prediction", "epsilon")),
    "ddpm": ("DDPMScheduler", ("sample", "v_prediction", "epsilon")),
    "dpm": ("DPMSolverMultistepScheduler", ("sample", "v_prediction", "epsilon")),
    "dpm-single": ("DPMSolverSinglestepScheduler", ("sample", "v_prediction", "epsilon")),
    "dpm-sde": ("DPMSolverSDEScheduler", ("v_prediction", "epsilon")),
    "deis": ("DEISMultistepScheduler", ("sample", "v_prediction", "epsilon")),
    "unipc": ("UniPCMultistepScheduler", ("sample", "v_prediction", "epsilon")),
    "euler": ("EulerDiscreteScheduler", ("sample", "v_prediction", "epsilon")),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", ("v_prediction", "epsilon")),
    "lms": ("LMSDiscreteScheduler", ("sample", "v_prediction", "epsilon")),
    "pndm": ("PNDMScheduler", ("v_prediction", "epsilon")),
    "lcm": ("LCMScheduler", ("sample", "v_prediction", "epsilon")),
    "tcd": ("TCDScheduler", ("sample", "v_prediction", "epsilon")),
    "ddim-parallel": ("DDIMParallelScheduler", ("sample", "v_prediction", "epsilon")),
    "ddpm-parallel": ("DDPMParallelScheduler", ("sample", "v_prediction", "epsilon")),
    "sa-solver": ("SASolverScheduler", ("sample", "v_prediction", "epsilon")),
}
"""Short name (``rdc --scheduler``) -> (diffusers class, the prediction types its ``step`` implements, best first)."""

TEMPORAL_NOISE = ("shared", "independent")
"""How a clip's frames draw their starting noise (``RDCVideoPipeline.decompress(temporal_noise=...)``): one draw
for every frame, or a new one per frame."""

_BY_CLASS = {cls: (name, types) for name, (cls, types) in SCHEDULERS.items()}
_NEEDS = {"DPMSolverSDEScheduler": "torchsde"}
_CONFIG = {"PNDMScheduler": {"skip_prk_steps": True}}
"""Settings a scheduler needs here: PNDM's Runge-Kutta warm-up fails below 4 steps (as Stable Diffusion, skip it)."""

_SECOND_ORDER = ("its second-order correction spans the first step from σ_max ≈ 20,000 (the cosine schedule's "
                 "t = 999), which turns the small difference of two noise estimates into grain: {} dB below the fast "
                 "decode at 2 steps, where DDIM is 0.21 dB below (4 Kodak crops, benchmarks/results/schedulers)")
REFUSED = {"HeunDiscreteScheduler": _SECOND_ORDER.format(9.8), "KDPM2DiscreteScheduler": _SECOND_ORDER.format(10.1),
           "KDPM2AncestralDiscreteScheduler": "from 2 steps on, the timestep it interpolates for its last σ (0) is "
                                              "NaN with this model's cosine schedule, and sampling fails"}
"""Schedulers of the right process that still do not work with this model, and why (measured)."""


def _supported_names() -> str:
    return ", ".join(f"{name} ({cls})" for name, (cls, _) in SCHEDULERS.items())


def available_schedulers() -> list[str]:
    """The short names of :data:`SCHEDULERS` whose optional package (``torchsde``) is installed."""
    return [name for name, (cls, _) in SCHEDULERS.items()
            if cls not in _NEEDS or importlib.util.find_spec(_NEEDS[cls]) is not None]


def supported_scheduler(scheduler: Any) -> bool:
    """Whether ``scheduler`` (an instance or a class) samples with the residual UNet."""
    cls = scheduler if isinstance(scheduler, type) else type(scheduler)
    missing = _NEEDS.get(cls.__name__)
    return cls.__name__ in _BY_CLASS and (missing is None or importlib.util.find_spec(missing) is not None)


def check_scheduler(scheduler: Any) -> None:
    """Raise :class:`UnsupportedSchedulerError` naming the supported schedulers unless ``scheduler`` is one."""
    cls = scheduler if isinstance(scheduler, type) else type(scheduler)
    if supported_scheduler(cls):
        return
    if cls.__name__ in REFUSED:
        raise UnsupportedSchedulerError(f"{cls.__name__} is not supported: {REFUSED[cls.__name__]}; supported: "
                                        f"{_supported_names()}")
    if cls.__name__ in _NEEDS:
        raise UnsupportedSchedulerError(f"{cls.__name__} needs the {_NEEDS[cls.__name__]} package "
                                        f"(pip install {_NEEDS[cls.__name__]})")
    raise UnsupportedSchedulerError(
        f"{cls.__name__} does not sample the residual UNet's variance-preserving process; supported: "
        f"{_supported_names()}"
    )


def scheduler_name(scheduler: Any) -> str:
    """The short name of a supported scheduler (instance or class name), else the class name in lower case."""
    cls_name = scheduler if isinstance(scheduler, str) else (
        scheduler.__name__ if isinstance(scheduler, type) else type(scheduler).__name__)
    return _BY_CLASS[cls_name][0] if cls_name in _BY_CLASS else cls_name.lower()


def load_scheduler(name: str, config: dict) -> Any:
    """The scheduler a short name (a key of :data:`SCHEDULERS`) or a class name stands for, built from a model's
    scheduler ``config`` with the prediction type it implements."""
    import diffusers

    cls_name = SCHEDULERS[name][0] if name in SCHEDULERS else name
    if cls_name not in _BY_CLASS:
        raise UnsupportedSchedulerError(f"unknown scheduler {name!r}; supported: {_supported_names()}")
    cls = getattr(diffusers, cls_name)
    check_scheduler(cls)
    return adapt_scheduler(cls.from_config(config))


def use_scheduler(pipe: Any, name: str | None) -> None:
    """Swap ``pipe``'s scheduler for the one a short name stands for, built from its config; None keeps it."""
    if name is not None:
        pipe.scheduler = load_scheduler(name, pipe.scheduler.config)


def adapt_scheduler(scheduler: Any) -> Any:
    """``scheduler``, checked, and rebuilt when its ``prediction_type`` is not one its ``step`` implements
    (``from_config(pipe.scheduler.config)`` copies the UNet's ``"sample"``, which e.g. Euler ancestral lacks) or
    :data:`_CONFIG` does not hold; its class becomes :func:`listing_supported` of its own."""
    check_scheduler(scheduler)
    cls = listing_supported(type(scheduler))
    types = _BY_CLASS[cls.__name__][1]
    changes = {k: v for k, v in _CONFIG.get(cls.__name__, {}).items() if scheduler.config.get(k) != v}
    if scheduler.config.prediction_type not in types:
        changes["prediction_type"] = types[0]
    if changes:
        return cls.from_config(scheduler.config, **changes)
    scheduler.__class__ = cls  # the same object (``pipe.scheduler is s`` after ``pipe.scheduler = s``)
    return scheduler


_LISTING: dict[type, type] = {}


def listing_supported(cls: type) -> type:
    """``cls`` with diffusers' ``compatibles`` narrowed to the supported schedulers that are installed.

    ``SchedulerMixin.compatibles`` reads the class attribute ``_compatibles``, diffusers' list of schedulers that
    share a config (it includes Heun and KDPM2); a subclass that only replaces that list, under the same name and
    module, keeps ``save_pretrained`` writing ``["diffusers", "DDIMScheduler"]`` and ``isinstance`` true."""
    if cls in _LISTING.values():
        return cls
    if cls not in _LISTING:
        names = [SCHEDULERS[name][0] for name in available_schedulers()]
        _LISTING[cls] = type(cls.__name__, (cls,), {
            "_compatibles": names, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__reduce__": lambda self: (_unpickle, (cls,), self.__dict__)})
    return _LISTING[cls]


def _unpickle(cls: type) -> Any:
    """Pickle finds a class by module and name, which lead to diffusers' own class: rebuild ours from it."""
    return object.__new__(listing_supported(cls))


class ChecksScheduler:
    """Pipeline mixin: a scheduler is checked and adapted (:func:`adapt_scheduler`) when it is assigned or given to
    ``__init__``, so an unsupported one fails there and ``pipe.scheduler.compatibles`` lists the supported ones."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "scheduler" and value is not None:
            value = adapt_scheduler(value)
        super().__setattr__(name, value)


def alpha_bar(scheduler: Any, timestep: Tensor | float) -> Tensor:
    """ᾱ at a possibly fractional ``timestep``: the k-diffusion schedulers put fractional timesteps at
    log-σ-interpolated positions of the training σ's, so ᾱ is interpolated in log σ as well."""
    import torch

    alphas_cumprod = scheduler.alphas_cumprod.detach().cpu().to(torch.float64)
    log_sigma = 0.5 * torch.log((1 - alphas_cumprod) / alphas_cumprod)
    t = torch.as_tensor(timestep).detach().cpu().double().clamp(0, len(alphas_cumprod) - 1)
    low = t.floor().long().clamp(max=len(alphas_cumprod) - 2)
    weight = t - low
    sigma = torch.exp((1 - weight) * log_sigma[low] + weight * log_sigma[low + 1])
    return 1 / (1 + sigma**2)


def convert_prediction(output: Tensor, sample: Tensor, alpha_prod: Tensor, source: str, target: str) -> Tensor:
    """The model ``output`` of type ``source`` for the VP ``sample`` x_t at ᾱ = ``alpha_prod``, as type ``target``.

    With a = √ᾱ, s = √(1−ᾱ): x_t = a·x_0 + s·ε and v = a·ε − s·x_0 (Salimans & Ho 2022).
    """
    if source == target:
        return output
    a = alpha_prod.sqrt().to(sample.device, sample.dtype)
    s = (1 - alpha_prod).sqrt().to(sample.device, sample.dtype)
    if source == "sample":
        x0, eps = output, (sample - a * output) / s
    elif source == "epsilon":
        x0, eps = (sample - s * output) / a, output
    else:  # v_prediction
        x0, eps = a * sample - s * output, s * sample + a * output
    return {"sample": x0, "epsilon": eps, "v_prediction": a * eps - s * x0}[target]
