"""How ``DiffusionPipeline.from_pretrained`` finds our pipelines: diffusers looks a model's ``"_class_name"`` up as an
attribute of the ``diffusers`` module and has no registry for outside classes, so we provide the attribute.

The pipelines are named here by module path only (``LAZY_PIPELINES``), imported when diffusers first asks: the
pipelines import this package (to load and save models), never the other way round.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any


def register_with_diffusers(pipeline_class: type) -> None:
    """Make ``DiffusionPipeline.from_pretrained(folder)`` resolve ``"_class_name": "RDCPipeline"``.

    diffusers looks the name up as an attribute of the ``diffusers`` module (``_get_pipeline_class`` in
    pipelines/pipeline_loading_utils.py); it has no registry for outside classes, so we add the attribute when
    rdc_diffusers is imported. Without that import, use ``custom_pipeline="pipeline"`` (see docs/hub.md).
    """
    import diffusers

    if getattr(diffusers, pipeline_class.__name__, None) is None:
        setattr(diffusers, pipeline_class.__name__, pipeline_class)
    from .pretrained import resolve_bundled_names_in_diffusers

    resolve_bundled_names_in_diffusers()  # and bundled names ("rdc-bsds") as if they were folders


LAZY_PIPELINES = {"RDCPipeline": "rdc_diffusers.pipelines.pipeline_rdc",
                  "RDCRefinerPipeline": "rdc_diffusers.pipelines.pipeline_rdc_refiner",
                  "RDCVideoPipeline": "rdc_diffusers.pipelines.pipeline_rdc_video"}
"""What ``register_when_diffusers_loads`` makes ``diffusers.<name>`` resolve to: the module holding that class."""


def _resolve_pipelines_lazily(diffusers: ModuleType) -> None:
    """Have ``diffusers.RDCPipeline`` and ``diffusers.RDCVideoPipeline`` import their class on first lookup, as
    diffusers' ``_LazyModule`` does for its own names, and the first lookup of ``diffusers.DiffusionPipeline`` (a
    model is about to load) import ``rdc_diffusers.pipelines``, which registers the rest (bundled model names).
    The module gets a subclass of its class with that fallback; nothing is imported now, so this is safe in the
    middle of any import."""
    base = type(diffusers)
    if getattr(base, "_resolves_rdc_pipelines", False):
        return
    fallback = getattr(base, "__getattr__", None)  # _LazyModule's; a plain module has none

    class WithRDCPipelines(base):
        _resolves_rdc_pipelines = True

        def __getattr__(self, name: str) -> Any:
            if name in LAZY_PIPELINES:
                value = getattr(importlib.import_module(LAZY_PIPELINES[name]), name)
                setattr(self, name, value)
                return value
            if fallback is None:
                raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
            value = fallback(self, name)  # _LazyModule caches it: the next lookup does not come here
            if name == "DiffusionPipeline":
                importlib.import_module("rdc_diffusers.pipelines")  # (if it is importing us, returns at once)
            return value

    diffusers.__class__ = WithRDCPipelines


class _ThenResolvePipelines:
    """A one-shot ``sys.meta_path`` finder: it finds nothing itself, but when ``diffusers`` is first imported it has
    that import end with :func:`_resolve_pipelines_lazily`."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != "diffusers":
            return None
        try:
            sys.meta_path.remove(self)  # once; and so the lookup below goes to the real finders
        except ValueError:
            return None
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_resolve(module: ModuleType) -> None:
            exec_module(module)
            _resolve_pipelines_lazily(sys.modules.get(fullname, module))  # diffusers swaps in its _LazyModule

        loader.exec_module = exec_then_resolve  # this loader instance only: find_spec made it for this import
        return spec


def register_when_diffusers_loads() -> None:
    """Make ``diffusers.RDCPipeline`` and ``diffusers.RDCVideoPipeline`` resolve, without importing either now.

    ``import rdc_diffusers`` no longer imports the pipelines (torch, diffusers and compressai take seconds), yet
    ``import rdc_diffusers`` then ``DiffusionPipeline.from_pretrained(folder or bundled name)`` must still return an
    RDCPipeline (docs/hub.md): diffusers looks ``"_class_name"`` up on its module, which then imports the class. If
    diffusers is not imported yet, a hook does this when it is; a process that never imports it (``rdc info``)
    pays nothing. If DiffusionPipeline is loaded already, its lookup cannot be caught: register now, as before.
    """
    diffusers = sys.modules.get("diffusers")
    if diffusers is not None and "diffusers.pipelines.pipeline_utils" in sys.modules:
        importlib.import_module("rdc_diffusers.pipelines")
    elif diffusers is not None:
        _resolve_pipelines_lazily(diffusers)
    elif not any(isinstance(finder, _ThenResolvePipelines) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ThenResolvePipelines())
