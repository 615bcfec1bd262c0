"""Every scheduler class diffusers exports either refines with the bundled model at sane quality at 1, 2 and 4
steps, or is refused with UnsupportedSchedulerError naming the supported ones (rdc_diffusers.schedulers)."""

from __future__ import annotations

import json
import pickle
import warnings

import diffusers
import numpy as np
import pytest
import torch
from conftest import load_pipeline
from PIL import Image

from rdc_diffusers import RDCPipeline
from rdc_diffusers.errors import UnsupportedSchedulerError
from rdc_diffusers.pipelines.pipeline_rdc import DEFAULT_SCHEDULER_CONFIG
from rdc_diffusers.schedulers import (
    REFUSED,
    SCHEDULERS,
    check_scheduler,
    convert_prediction,
    load_scheduler,
    supported_scheduler,
)

ALL_SCHEDULERS = sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and n != "SchedulerMixin")
MAX_PSNR_DROP_DB = 5.0
"""How far below the fast decode a refined decode may fall (the worst supported scheduler, UniPC at 4 steps, is
1.7 dB below it on 4 Kodak crops, benchmarks/results/schedulers; the refused Heun and KDPM2 about 10 dB)."""


@pytest.fixture(scope="module")
def bundled():
    pipe = load_pipeline("rdc-bsds")
    image = Image.open("examples/images/kodim23.png").convert("RGB").crop((256, 128, 384, 256))
    data = pipe.compress(image, quality=50)
    reference = np.asarray(image, dtype=np.float64)
    fast = np.asarray(pipe.decompress(data, refine=False).images[0], dtype=np.float64)
    return pipe, data, reference, fast


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))


def test_the_supported_table_names_real_diffusers_classes():
    assert set(ALL_SCHEDULERS) >= {cls for cls, _ in SCHEDULERS.values()} | set(REFUSED)
    assert {"ddim", "ddpm", "dpm", "euler", "euler-ancestral", "unipc", "pndm", "lms"} <= set(SCHEDULERS)


@pytest.mark.parametrize("name", ALL_SCHEDULERS)
def test_every_diffusers_scheduler_works_or_is_refused_by_name(bundled, name):
    pipe, data, reference, fast = bundled
    cls = getattr(diffusers, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler = cls.from_config(pipe.scheduler.config)  # what a user swapping schedulers writes
    except (TypeError, ImportError):  # needs arguments our config lacks, or a missing package: never reaches us
        assert not supported_scheduler(cls)
        with pytest.raises(UnsupportedSchedulerError, match="supported: ddim"):
            check_scheduler(cls)
        return
    original = pipe.scheduler
    if not supported_scheduler(cls):
        with pytest.raises(UnsupportedSchedulerError, match=f"{name}.*supported: ddim \\(DDIMScheduler\\)"):
            pipe.scheduler = scheduler
        assert pipe.scheduler is original
        return
    pipe.scheduler = scheduler
    try:
        for steps in (1, 2, 4):
            refined = np.asarray(pipe.decompress(data, num_inference_steps=steps).images[0], dtype=np.float64)
            assert psnr(refined, reference) > psnr(fast, reference) - MAX_PSNR_DROP_DB, (name, steps)
            assert psnr(refined, fast) < 60, (name, steps)  # the residual was really sampled
    finally:
        pipe.scheduler = original


def test_the_cli_takes_every_supported_name(bundled):
    pipe = bundled[0]
    for name, (cls, _) in SCHEDULERS.items():
        if supported_scheduler(getattr(diffusers, cls)):
            assert type(load_scheduler(name, pipe.scheduler.config)).__name__ == cls
    with pytest.raises(UnsupportedSchedulerError, match="unknown scheduler 'heun2'.*supported: ddim"):
        load_scheduler("heun2", pipe.scheduler.config)


def test_a_scheduler_without_sample_prediction_is_rebuilt_with_one_it_has(fresh_pipeline):
    """Euler ancestral implements ε and v only; from_config copies the UNet's "sample"."""
    fresh_pipeline.scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(fresh_pipeline.scheduler.config)
    data = fresh_pipeline.compress(np.zeros((32, 32, 3), np.uint8))
    fresh_pipeline.decompress(data, num_inference_steps=2)
    assert fresh_pipeline.scheduler.config.prediction_type == "v_prediction"


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_a_scheduler_with_another_prediction_type_gives_the_same_pixels(fresh_pipeline, prediction_type):
    data = fresh_pipeline.compress(np.full((32, 48, 3), 90, np.uint8))
    native = fresh_pipeline.decompress(data, num_inference_steps=3, output_type="np").images
    fresh_pipeline.scheduler = diffusers.DDIMScheduler(**DEFAULT_SCHEDULER_CONFIG, prediction_type=prediction_type)
    converted = fresh_pipeline.decompress(data, num_inference_steps=3, output_type="np").images
    np.testing.assert_allclose(converted, native, atol=2e-3)


@pytest.mark.parametrize("source", ["sample", "epsilon", "v_prediction"])
@pytest.mark.parametrize("target", ["sample", "epsilon", "v_prediction"])
def test_prediction_conversions_agree_with_the_forward_process(source, target):
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, generator=generator), torch.randn(2, 3, 4, 4, generator=generator)
    alpha_prod = torch.tensor(0.3)
    sample = alpha_prod.sqrt() * x0 + (1 - alpha_prod).sqrt() * eps
    truth = {"sample": x0, "epsilon": eps, "v_prediction": alpha_prod.sqrt() * eps - (1 - alpha_prod).sqrt() * x0}
    converted = convert_prediction(truth[source], sample, alpha_prod, source, target)
    torch.testing.assert_close(converted, truth[target], atol=1e-5, rtol=1e-5)


def test_a_refused_scheduler_is_refused_when_assigned_or_loaded(fresh_pipeline, tmp_path):
    heun = diffusers.HeunDiscreteScheduler.from_config(fresh_pipeline.scheduler.config)
    with pytest.raises(UnsupportedSchedulerError, match="HeunDiscreteScheduler is not supported: its second-order"):
        fresh_pipeline.scheduler = heun
    with pytest.raises(UnsupportedSchedulerError, match="HeunDiscreteScheduler is not supported"):
        RDCPipeline(codec=fresh_pipeline.codec, unet=fresh_pipeline.unet, scheduler=heun)
    fresh_pipeline.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedSchedulerError, match="HeunDiscreteScheduler is not supported"):
        RDCPipeline.from_pretrained(tmp_path, scheduler=heun)


def test_compatibles_lists_exactly_the_supported_schedulers(bundled):
    pipe = bundled[0]
    classes = [getattr(diffusers, cls) for cls, _ in SCHEDULERS.values()]
    supported = {cls for cls in classes if supported_scheduler(cls)}
    assert set(pipe.scheduler.compatibles) == supported
    assert diffusers.HeunDiscreteScheduler not in supported
    for cls in pipe.scheduler.compatibles:  # what a user who trusts the list writes: each one is accepted
        load_scheduler(cls.__name__, pipe.scheduler.config)


def test_an_adapted_scheduler_saves_pickles_and_loads_as_diffusers_own_class(fresh_pipeline, tmp_path):
    scheduler = diffusers.UniPCMultistepScheduler.from_config(fresh_pipeline.scheduler.config)
    fresh_pipeline.scheduler = scheduler
    assert fresh_pipeline.scheduler is scheduler and isinstance(scheduler, diffusers.UniPCMultistepScheduler)
    copy = pickle.loads(pickle.dumps(scheduler))
    assert type(copy) is type(scheduler) and copy.config == scheduler.config
    fresh_pipeline.save_pretrained(tmp_path)
    model_index = json.loads((tmp_path / "model_index.json").read_text())
    assert model_index["scheduler"] == ["diffusers", "UniPCMultistepScheduler"]
    loaded = RDCPipeline.from_pretrained(tmp_path)
    assert type(loaded.scheduler).__name__ == "UniPCMultistepScheduler"
    assert set(loaded.scheduler.compatibles) == set(scheduler.compatibles)
