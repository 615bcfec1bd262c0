"""Models shipped inside the package, loadable offline by a short name."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "bundled"
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
