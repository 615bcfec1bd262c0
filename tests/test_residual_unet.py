"""The residual denoiser and its CDC-style variant (the ablation baseline): what each adds its output to."""

import torch
from conftest import random_image
from diffusers import DDIMScheduler

from rdc_diffusers import RDCPipeline, ResidualUNet
from rdc_diffusers.pipelines.pipeline_rdc import DEFAULT_SCHEDULER_CONFIG


def tiny_unet(**kwargs) -> ResidualUNet:
    torch.manual_seed(0)
    return ResidualUNet(latent_channels=24, cond_channels=4, block_out_channels=(8, 16), norm_num_groups=4, **kwargs)


def zero_residual(pipe, step, timestep, tensors):
    return {"residual": torch.zeros_like(tensors["residual"])}


def test_the_residual_unet_sees_x_init():
    unet = tiny_unet()
    sample, y_hat = torch.randn(1, 3, 32, 32), torch.randn(1, 24, 2, 2)
    first = unet(sample, 10, x_init=torch.zeros(1, 3, 32, 32), y_hat=y_hat).sample
    second = unet(sample, 10, x_init=torch.ones(1, 3, 32, 32), y_hat=y_hat).sample
    assert not torch.equal(first, second)


def test_the_cdc_style_unet_ignores_x_init_and_has_fewer_inputs():
    unet, residual = tiny_unet(residual=False), tiny_unet()
    assert unet.unet.config.in_channels == residual.unet.config.in_channels - 12  # 3·2² x_init channels
    sample, y_hat = torch.randn(1, 3, 32, 32), torch.randn(1, 24, 2, 2)
    first = unet(sample, 10, x_init=torch.zeros(1, 3, 32, 32), y_hat=y_hat).sample
    second = unet(sample, 10, x_init=torch.ones(1, 3, 32, 32), y_hat=y_hat).sample
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
