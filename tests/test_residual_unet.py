"""The residual denoiser and its CDC-style variant (the ablation baseline): what each adds its output to, and how
one UNet serves every quality."""

import pytest
import torch
from conftest import random_image
from diffusers import DDIMScheduler
from safetensors.torch import load_file, save_file

from rdc_diffusers import IncompatibleModelError, RDCPipeline, ResidualUNet
from rdc_diffusers.pipelines.pipeline_rdc import DEFAULT_SCHEDULER_CONFIG
from rdc_diffusers.training import warm_start


def tiny_unet(**kwargs) -> ResidualUNet:
    torch.manual_seed(0)
    return ResidualUNet(latent_channels=24, cond_channels=4, block_out_channels=(8, 16), norm_num_groups=4, **kwargs)


def zero_residual(pipe, step, timestep, tensors):
    return {"residual": torch.zeros_like(tensors["residual"])}


def test_the_residual_unet_sees_x_init():
    unet = tiny_unet()
    sample, y_hat = torch.randn(1, 3, 32, 32), torch.randn(1, 24, 2, 2)
    first = unet(sample, 10, x_init=torch.zeros(1, 3, 32, 32), y_hat=y_hat, quality=50).sample
    second = unet(sample, 10, x_init=torch.ones(1, 3, 32, 32), y_hat=y_hat, quality=50).sample
    assert not torch.equal(first, second)


def trained_quality_embedding(unet: ResidualUNet) -> ResidualUNet:
    """Stand-in for training: the quality embedding's last layer starts at zero, and training moves it."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in unet.unet.class_embedding.linear_2.parameters():
            parameter.normal_(0, 0.5)
    return unet


def test_a_new_unet_ignores_the_quality_until_trained():
    """A UNet trained before the quality input existed warm-starts unchanged; training then makes it matter."""
    unet = tiny_unet()
    sample, x_init, y_hat = torch.randn(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.randn(1, 24, 2, 2)
    low = unet(sample, 10, x_init=x_init, y_hat=y_hat, quality=0).sample
    high = unet(sample, 10, x_init=x_init, y_hat=y_hat, quality=100).sample
    torch.testing.assert_close(low, high, rtol=0, atol=0)

    trained_quality_embedding(unet)
    low = unet(sample, 10, x_init=x_init, y_hat=y_hat, quality=0).sample
    high = unet(sample, 10, x_init=x_init, y_hat=y_hat, quality=100).sample
    assert not torch.allclose(low, high)


def test_the_unet_takes_one_quality_per_image():
    unet = trained_quality_embedding(tiny_unet())
    sample, x_init, y_hat = torch.randn(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.randn(2, 24, 2, 2)

    batch = unet(sample, 10, x_init=x_init, y_hat=y_hat, quality=torch.tensor([20.0, 80.0])).sample

    for i, quality in enumerate((20.0, 80.0)):
        alone = unet(sample[i : i + 1], 10, x_init=x_init[i : i + 1], y_hat=y_hat[i : i + 1], quality=quality).sample
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=1e-4, atol=1e-5)
    same = unet(sample, 10, x_init=x_init, y_hat=y_hat, quality=20.0).sample  # one quality for the whole batch
    torch.testing.assert_close(same[:1], batch[:1], rtol=1e-4, atol=1e-5)


def test_the_unet_runs_in_half_precision():
    unet = trained_quality_embedding(tiny_unet())
    sample, x_init, y_hat = torch.randn(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.randn(1, 24, 2, 2)
    full = unet(sample, 10, x_init=x_init, y_hat=y_hat, quality=30).sample

    unet.to(torch.float16)
    half = unet(sample.half(), 10, x_init=x_init.half(), y_hat=y_hat.half(), quality=30).sample

    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, rtol=0, atol=0.05)


def test_a_unet_saved_without_the_quality_embedding_warm_starts_unchanged(tmp_path):
    """The UNets of the retired single-rate models had no quality input: warm-started, they predict what they did."""
    old = tiny_unet()
    old.save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if "class_embedding" not in k}, weights, metadata={"format": "pt"})

    with pytest.raises(IncompatibleModelError, match="class_embedding.*older rdc-diffusers"):
        ResidualUNet.from_pretrained(tmp_path)  # diffusers would leave the embedding random: a changed model
    unet = warm_start(ResidualUNet, tmp_path)

    assert unet.training
    embedding = unet.unet.class_embedding
    assert all(torch.isfinite(p).all() for p in embedding.parameters())
    assert torch.equal(embedding.linear_2.weight, torch.zeros_like(embedding.linear_2.weight))
    unet.eval()
    sample, x_init, y_hat = torch.randn(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.randn(1, 24, 2, 2)
    for quality in (0, 50, 100):
        torch.testing.assert_close(unet(sample, 10, x_init=x_init, y_hat=y_hat, quality=quality).sample,
                                   old(sample, 10, x_init=x_init, y_hat=y_hat, quality=quality).sample)


def test_a_complete_unet_folder_loads_with_its_loading_info(tmp_path):
    tiny_unet().save_pretrained(tmp_path)
    unet, info = ResidualUNet.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(unet, ResidualUNet) and not info["missing_keys"]


def test_the_cdc_style_unet_ignores_x_init_and_has_fewer_inputs():
    unet, residual = tiny_unet(residual=False), tiny_unet()
    assert unet.unet.config.in_channels == residual.unet.config.in_channels - 12  # 3·2² x_init channels
    sample, y_hat = torch.randn(1, 3, 32, 32), torch.randn(1, 24, 2, 2)
    first = unet(sample, 10, x_init=torch.zeros(1, 3, 32, 32), y_hat=y_hat, quality=50).sample
    second = unet(sample, 10, x_init=torch.ones(1, 3, 32, 32), y_hat=y_hat, quality=50).sample
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_a_zero_residual_decodes_to_x_init(tiny_pipeline):
    data = tiny_pipeline.compress(random_image(64, 64))
    fast = tiny_pipeline.decompress(data, refine=False, output_type="pt").images
    refined = tiny_pipeline.decompress(data, output_type="pt", callback_on_step_end=zero_residual).images
    torch.testing.assert_close(refined, fast, rtol=0, atol=0)


def test_the_cdc_style_pipeline_generates_around_grey_not_x_init(tiny_pipeline, tmp_path):
    """With a zero sample the CDC-style decode is mid-grey: the image comes from the UNet, not from x_init."""
    scheduler = DDIMScheduler(**DEFAULT_SCHEDULER_CONFIG, prediction_type="sample")
    pipe = RDCPipeline(codec=tiny_pipeline.codec, unet=tiny_unet(residual=False, residual_scale=2.0),
                       scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "cdc")
    reloaded = RDCPipeline.from_pretrained(tmp_path / "cdc")
    reloaded.set_progress_bar_config(disable=True)
    assert reloaded.unet.config.residual is False
    data = pipe.compress(random_image(64, 64))
    grey = reloaded.decompress(data, output_type="pt", callback_on_step_end=zero_residual).images
    torch.testing.assert_close(grey, torch.full_like(grey, 0.5), rtol=0, atol=0)
    sampled = reloaded.decompress(data, output_type="pt").images
    assert sampled.shape == grey.shape and not torch.equal(sampled, grey)
