"""Models shipped inside the package, loadable offline by a short name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BUNDLED_DIR = Path(__file__).parents[1] / "bundled"
DEFAULT_MODEL = "rdc-bsds"
"""The model the README's command and `rdc` use when none is named."""


def bundled_models() -> list[str]:
    """Names of the models shipped with this installation."""
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "model_index.json").exists()) \
        if BUNDLED_DIR.exists() else []


def resolve_model(name_or_path: str | Path) -> str | Path:
    """An existing path stays a path, a bundled name becomes its folder, anything else is a Hub repo id."""
    if Path(name_or_path).exists():
        return name_or_path
    if str(name_or_path) in bundled_models():
        return BUNDLED_DIR / str(name_or_path)
    return name_or_path


def unknown_model_message(name: str | Path, offline: bool) -> str:
    """Why ``name`` cannot be loaded, listing the bundled names: a mistyped ``rdc-bsds-q9`` gets a list to choose
    from instead of the Hub client's error about its cache."""
    where = "in the Hugging Face cache (offline: nothing is downloaded)" if offline else "on the Hugging Face Hub"
    return (f"{str(name)!r} is not a folder, a bundled model (bundled: {', '.join(bundled_models()) or 'none'}) "
            f"or a model {where}")


def safetensors_only(kwargs: dict) -> dict:
    """``from_pretrained`` keyword arguments that load safetensors weights only: pickle files can run code."""
    if kwargs.get("use_safetensors") is False:
        raise ValueError("rdc-diffusers loads safetensors weights only (pickle files can run code)")
    return kwargs | {"use_safetensors": True}


def model_name(name_or_path: str | Path | None) -> str:
    """A readable model name for messages and file headers: a folder's name, or the Hub repo id (≤ 255 bytes)."""
    name = str(name_or_path or "unsaved-model")
    path = Path(name)
    return (path.name if path.exists() else name).encode()[:255].decode(errors="ignore")


def warn_if_slow_on_cpu(device: torch.device | str, dtype: torch.dtype) -> None:
    """A ``UserWarning`` when the UNet is to sample in a half precision the CPU has no fast kernels for: a refined
    decode then takes many times longer than in float32 (rdc-bsds, 256², 1 step, one thread of an AVX-512 CPU
    without FP16 instructions: 25.7 s in float16 against 0.33 s), which looks like a hang. Python's default filter
    shows it once per session (stacklevel 2: one place in ``refine``)."""
    import warnings

    import torch

    if torch.device(device).type != "cpu" or dtype not in (torch.float16, torch.bfloat16):
        return
    try:  # oneDNN's own test of the CPU's instructions (bfloat16: AVX512-BF16/AMX; float16: AVX512-FP16/AMX-FP16)
        fast = (torch.ops.mkldnn._is_mkldnn_bf16_supported() if dtype == torch.bfloat16
                else torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        fast = False
    if not fast:
        warnings.warn(f"the UNet runs in {str(dtype).removeprefix('torch.')} on a CPU without fast kernels for it: "
                      "a refined decode can take ~80x longer than in float32; load with dtype=torch.float32 (the "
                      "default) on CPUs, half precision on GPUs", UserWarning, stacklevel=2)


def resolve_bundled_names_in_diffusers() -> None:
    """Make ``DiffusionPipeline.from_pretrained("rdc-bsds")`` load the bundled model, and a name found nowhere
    (``"rdc-bsds-q9"``) raise an ``OSError`` that lists the bundled names.

    diffusers' ``from_pretrained`` hands every name that is not a folder to the classmethod
    ``DiffusionPipeline.download`` (pipelines/pipeline_utils.py), which knows only the Hub and its cache; there is
    no hook for another source of local folders. So registering with diffusers
    (``hub.registration.register_with_diffusers``) wraps that one classmethod, explicitly and once: a bundled name
    returns its folder before the Hub is asked; offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) a name
    the cache does not hold fails at once, without diffusers' "Couldn't connect to the Hub" log line and "see the
    stacktrace above" error; every other name goes to diffusers' own ``download`` unchanged, and only its failure
    for an owner-less name (``rdc-bsds-q9``, not ``org/model``) is reworded. ``RDCPipeline`` and
    ``RDCVideoPipeline`` inherit the wrapped ``download``.
    """
    import functools

    from diffusers import DiffusionPipeline

    download = DiffusionPipeline.__dict__["download"].__func__
    if getattr(download, "resolves_bundled_names", False):
        return

    @functools.wraps(download)
    def download_or_bundled(cls: type, pretrained_model_name: str, **kwargs) -> str:
        from huggingface_hub import constants

        folder = resolve_model(pretrained_model_name)
        if folder != pretrained_model_name:
            return str(folder)
        offline = bool(kwargs.get("local_files_only")) or constants.HF_HUB_OFFLINE
        if offline and not _in_hub_cache(pretrained_model_name, cls.config_name, kwargs):
            raise OSError(unknown_model_message(pretrained_model_name, offline=True))
        try:
            return download(cls, pretrained_model_name, **kwargs)
        except OSError as err:
            if "/" in str(pretrained_model_name):
                raise
            raise OSError(unknown_model_message(pretrained_model_name, offline=offline)) from err

    download_or_bundled.resolves_bundled_names = True
    DiffusionPipeline.download = classmethod(download_or_bundled)


def _in_hub_cache(repo_id: str, filename: str, kwargs: dict) -> bool:
    """Whether the Hugging Face cache holds ``filename`` of ``repo_id`` (huggingface_hub's own lookup)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=kwargs.get("cache_dir"),
                                       revision=kwargs.get("revision"))
    except ValueError:  # not a valid repo id (huggingface_hub's HFValidationError): nothing can be cached for it
        return False
    return isinstance(found, str)
