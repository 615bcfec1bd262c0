"""The training recipe (examples/train_rdc.py) run for real on a tiny model: both stages, the CDC-style
baseline, the video inter codec, warm starts, and outputs that load as pipelines."""

import argparse
import json
import math
import random
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import (
    PYTHON,
    build_tiny_pipeline,
    build_tiny_refiner,
    load_pipeline,
    load_script,
    python_env,
    random_image,
)
from safetensors.torch import load_file, save_file

from rdc_diffusers import RDCCodec, RDCInterCodec, RDCVideoPipeline
from rdc_diffusers.bitstream.rdc import decode_file
from rdc_diffusers.training import (
    ImageFolderDataset,
    PatchDiscriminator,
    adversarial_losses,
    energy_score,
    lpips_distance,
    rate_distortion_loss,
)

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_rdc.py"
TINY = ["--crop-size", "64", "--batch-size", "2", "--iterations", "2", "--log-every", "1", "--val-every", "100"]


def run_script(*args: str) -> subprocess.CompletedProcess:
    """The script on a tiny budget; ``args`` come after ``TINY``, so they may override it."""
    return subprocess.run([PYTHON, str(SCRIPT), *TINY, *args], env=python_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)


def train(*args: str) -> list[dict]:
    result = run_script(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    output = Path(args[args.index("--output") + 1])
    return [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        random_image(320, 320, seed=i).save(folder / f"{i}.png")  # the inter stage validates on 192 px clips
    return folder


@pytest.fixture(scope="module")
def codec_run(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "codec"
    log = train("codec", "--train-dir", str(photos), "--val-dir", str(photos), "--output", str(out),
                "--N", "16", "--M", "24", "--lmbda-min", "0.001", "--lmbda-max", "0.05", "--gain-levels", "3")
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    # Measured from real bytes at the end, at a low, a middle and a high quality.
    assert {f"val_{metric}_q{q}" for metric in ("bpp", "psnr") for q in (10, 50, 90)} <= set(log[-1])
    return out / "codec"


def test_the_codec_stage_saves_one_codec_for_every_rate(codec_run, photos):
    codec = RDCCodec.from_pretrained(codec_run)
    assert (codec.config.lmbda_min, codec.config.lmbda_max, codec.config.gain_levels) == (0.001, 0.05, 3)
    assert codec.log_gain.shape == (3, 24) and torch.isfinite(codec.log_gain).all()
    x = torch.rand(1, 3, 64, 64)
    for quality in (0, 50, 100):
        coded = codec.compress(x, quality)
        assert codec.decompress(coded["strings"], coded["shape"], quality)["x_init"].shape == (1, 3, 64, 64)


def test_a_warm_started_codec_trains_in_training_mode(codec_run):
    """from_pretrained gives eval mode, where the rate term would not reach the encoder."""
    script = load_script("examples/train_rdc.py")
    args = argparse.Namespace(init=str(codec_run), N=16, M=24)
    assert script.initial_codec(args).training
    fresh = argparse.Namespace(init=None, N=16, M=24, lmbda_min=0.001, lmbda_max=0.05, gain_levels=4)
    codec = script.initial_codec(fresh)
    assert codec.training and codec.config.gain_levels == 4 and codec.config.lmbda_max == 0.05


def test_the_rate_distortion_loss_takes_one_lambda_per_image():
    """A variable-rate batch: each image is weighed at the λ of its own quality, then the losses are averaged."""
    torch.manual_seed(0)
    x, x_hat = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    likelihoods = {"y": torch.rand(2, 4, 2, 2), "z": torch.rand(2, 2, 1, 1)}
    lmbda = torch.tensor([0.001, 0.05])

    both = rate_distortion_loss(likelihoods, x_hat, x, lmbda)

    alone = [rate_distortion_loss({k: v[i : i + 1] for k, v in likelihoods.items()}, x_hat[i : i + 1],
                                  x[i : i + 1], lmbda[i].item()) for i in range(2)]
    for key in ("loss", "bpp", "mse"):
        torch.testing.assert_close(both[key], (alone[0][key] + alone[1][key]) / 2)
    bits = -torch.log2(likelihoods["y"][0]).sum() - torch.log2(likelihoods["z"][0]).sum()
    torch.testing.assert_close(alone[0]["bpp"], bits / 64)
    torch.testing.assert_close(alone[0]["loss"], alone[0]["bpp"] + 0.001 * 255**2 * alone[0]["mse"])


@pytest.mark.parametrize("mode", ["residual", "cdc"])
def test_the_second_stage_saves_a_pipeline_that_decodes(mode, codec_run, photos, tmp_path):
    out = tmp_path / mode
    log = train("residual", "--mode", mode, "--codec", str(codec_run), "--train-dir", str(photos),
                "--val-dir", str(photos), "--output", str(out), "--block-out-channels", "8", "16",
                "--cond-channels", "4")
    pipe = load_pipeline(out / "pipeline")
    assert pipe.unet.config.residual is (mode == "residual")
    assert pipe.unet.config.residual_scale == (2.0 if mode == "cdc" else pytest.approx(log[0]["residual_scale"]))
    assert pipe.codec.fingerprint() == RDCCodec.from_pretrained(codec_run).fingerprint()  # the codec stayed frozen
    assert {"val_psnr_fast_q10", "val_lpips_1step_q90"} <= set(log[-1])  # every validation quality
    for quality in (0, 100):
        data = pipe.compress(random_image(64, 64), quality=quality)
        assert pipe.decompress(data, output_type="np").images.shape == (1, 64, 64, 3)


def test_the_residual_scale_is_measured_on_unzoomed_crops_and_kept_by_a_warm_start(codec_run, photos, tmp_path):
    """Zoomed crops are smoother, and another seed draws other crops: a warm start that measured the scale again
    would change the units its weights were trained in (and two runs to be averaged would disagree)."""
    common = ("--codec", str(codec_run), "--train-dir", str(photos), "--val-dir", str(photos))
    tiny = ("--block-out-channels", "8", "16", "--cond-channels", "4")
    first = train("residual", *common, "--output", str(tmp_path / "first"), *tiny)
    zoomed = train("residual", *common, "--output", str(tmp_path / "zoomed"), *tiny, "--max-upscale", "1.6")
    assert zoomed[0]["residual_scale"] == pytest.approx(first[0]["residual_scale"])
    unet = tmp_path / "first" / "pipeline" / "unet"
    config = json.loads((unet / "config.json").read_text())  # a scale the photos would not measure
    (unet / "config.json").write_text(json.dumps(config | {"residual_scale": 7.5}))
    train("residual", *common, "--init", str(unet), "--output", str(tmp_path / "warm"), "--max-upscale", "1.6",
          "--seed", "1")
    assert load_pipeline(tmp_path / "warm" / "pipeline").unet.config.residual_scale == 7.5


def test_crops_at_a_random_zoom_are_upscaled_patches(photos):
    plain = ImageFolderDataset(photos, crop_size=64)
    random.seed(3)
    crop = plain[0]
    random.seed(3)  # no zoom draws nothing extra: the crop is the photo's pixels where it always was
    top, left, flip = random.randint(0, 256), random.randint(0, 256), random.random() < 0.5
    pixels = plain.images[0][:, top:top + 64, left:left + 64]
    torch.testing.assert_close(crop, (pixels.flip(-1) if flip else pixels).float() / 255)

    zoomed = ImageFolderDataset(photos, crop_size=64, max_upscale=2.0)
    crops = torch.stack([zoomed[i] for i in range(24)])
    assert crops.shape == (24, 3, 64, 64) and crops.min() >= 0 and crops.max() <= 1
    # The photos are noise over a gradient: upscaled patches have smaller differences between neighbours.
    detail = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert detail(crops) < 0.9 * detail(torch.stack([plain[i] for i in range(24)]))
    with pytest.raises(ValueError, match="max_upscale"):
        ImageFolderDataset(photos, crop_size=64, max_upscale=0.5)


def test_the_residual_stage_trains_on_the_pipelines_own_sampling_trajectory():
    """sampler_state(N, k) is the residual RDCPipeline.denoise holds before its step k, at that step's timestep."""
    from diffusers import DDIMScheduler

    script = load_script("examples/train_rdc.py")
    pipe = build_tiny_pipeline()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        coded = pipe.codec(x, 50.0)
    x_init, y_hat, noise = coded["x_init"].clamp(0, 1), coded["y_hat"], torch.randn_like(x)
    seen = [noise]
    pipe.denoise(x_init, y_hat, 50.0, num_inference_steps=4, noise=noise, progress=False,
                callback_on_step_end=lambda p, i, t, tensors: seen.append(tensors["residual"].clone()))
    cond = {"x_init": x_init, "y_hat": y_hat, "quality": torch.tensor([50.0])}
    for k in range(4):
        scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        r_t, t = script.sampler_state(scheduler, pipe.unet, noise, cond, steps=4, k=k)
        torch.testing.assert_close(r_t, seen[k])
        assert t.tolist() == [pipe.scheduler.timesteps[k].item()]
    assert not torch.allclose(seen[1], seen[0]) and not torch.allclose(seen[2], seen[1])  # the model did move r_t


def residual_loss_inputs():
    """What ``residual_losses`` takes, for a tiny pipeline and two crops at quality 50: ``(script, unet, x, cond,
    noise_scheduler, sampler, calls)``, ``calls`` collecting the UNet's ``(r_t, t)``."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from rdc_diffusers.pipelines.pipeline_rdc import DEFAULT_SCHEDULER_CONFIG

    pipe = build_tiny_pipeline()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        coded = pipe.codec(x, 50.0)
    cond = {"x_init": coded["x_init"].clamp(0, 1), "y_hat": coded["y_hat"], "quality": torch.tensor([50.0, 50.0])}
    calls = []
    forward = pipe.unet.forward
    pipe.unet.forward = lambda r_t, t, **kw: calls.append((r_t.clone(), t.clone())) or forward(r_t, t, **kw)
    noise_scheduler = DDPMScheduler(**DEFAULT_SCHEDULER_CONFIG, prediction_type=pipe.unet.config.prediction_type)
    return (load_script("examples/train_rdc.py"), pipe.unet, x, cond, noise_scheduler,
            DDIMScheduler.from_config(noise_scheduler.config), calls)


@pytest.mark.parametrize("steps", [1, 4])
def test_sampler_steps_choose_the_trajectories_the_batches_follow(steps):
    """--few-step-fraction 1 --sampler-steps 1 (how the refiner, decoded in one step, trains since session 24):
    every batch is the 1-step sampler's own state, pure noise at its one timestep, and no trajectory is run."""
    script, unet, x, cond, noise_scheduler, sampler, calls = residual_loss_inputs()
    args = argparse.Namespace(few_step_fraction=1.0, sampler_steps=[steps], rho=0.0, energy_score=0.0,
                              lpips_energy=False)
    for seed in range(10):  # with the default 1-8 step mix, k = 0 ten times running has odds of 1 in 2,000
        calls.clear()
        torch.manual_seed(seed)
        noise = torch.randn_like(x)
        torch.manual_seed(seed)
        script.residual_losses(args, unet, noise_scheduler, sampler, x, cond)
        sampler.set_timesteps(steps)
        k = len(calls) - 1  # the sampler's steps the model ran before the trained one
        assert calls[-1][1].tolist() == [sampler.timesteps[k].item()] * 2
        if steps == 1:
            assert k == 0 and torch.equal(calls[0][0], noise)


def test_the_energy_score_prefers_samples_to_their_mean():
    """MSE scores the mean of a distribution better than samples of it (why an MSE-trained residual is shrunk); the
    energy score scores the samples better, at its expected values, and its gradient stays finite where the two
    samples coincide (the mean a warm-started UNet begins from)."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)  # the truth, drawn from N(0, 1) per pixel
    a, b = torch.randn_like(x), torch.randn_like(x)  # two samples of the same distribution
    mean = torch.zeros_like(x, requires_grad=True)
    assert torch.nn.functional.mse_loss(mean, x) < torch.nn.functional.mse_loss(a, x)
    assert energy_score(a, b, x).item() == pytest.approx(math.sqrt(2) / 2, abs=0.02)  # √2 − √2 / 2
    at_mean = energy_score(mean, mean, x)
    assert at_mean.item() == pytest.approx(1.0, abs=0.02) and at_mean > energy_score(a, b, x)
    (grad,) = torch.autograd.grad(at_mean, mean)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_the_energy_score_loss_draws_two_samples_per_crop():
    """--energy-score: the UNet runs on each crop twice, from independent noise, and the loss replaces MSE."""
    script, unet, x, cond, noise_scheduler, sampler, calls = residual_loss_inputs()
    args = argparse.Namespace(few_step_fraction=1.0, sampler_steps=[1], rho=0.5, energy_score=0.25,
                              lpips_energy=False)
    losses = script.residual_losses(args, unet, noise_scheduler, sampler, x, cond)
    ((r_t, _),) = calls
    assert r_t.shape[0] == 4 and not torch.allclose(r_t[:2], r_t[2:])  # two noises per crop
    assert losses["loss"].item() == pytest.approx(0.25 * losses["energy"].item() + 0.5 * losses["lpips"].item())
    assert losses["spread"] > 0
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in unet.parameters() if p.grad is not None)


def test_the_lpips_energy_score_replaces_the_lpips_term():
    """--lpips-energy: two samples per crop, scored in LPIPS's feature space (√LPIPS, a distance: zero between an
    image and itself, symmetric) in place of ρ·LPIPS, beside the MSE; its gradient reaches the UNet."""
    script, unet, x, cond, noise_scheduler, sampler, calls = residual_loss_inputs()
    assert lpips_distance(x, x).max() < 1e-5
    assert torch.allclose(lpips_distance(x, x.flip(0)), lpips_distance(x.flip(0), x))
    args = argparse.Namespace(few_step_fraction=1.0, sampler_steps=[1], rho=0.5, energy_score=0.0,
                              lpips_energy=True)
    losses = script.residual_losses(args, unet, noise_scheduler, sampler, x, cond)
    ((r_t, _),) = calls
    assert r_t.shape[0] == 4 and "lpips" not in losses
    assert losses["loss"].item() == pytest.approx(losses["mse"].item() + 0.5 * losses["lpips_energy"].item())
    losses["loss"].backward()
    grads = [p.grad for p in unet.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_a_single_rate_codec_warm_starts_a_variable_rate_run(codec_run, photos, tmp_path):
    """--init from a codec saved before the rate gains existed (the retired single-rate models): its transforms
    load, the gains start from their initialisation, and the init's config wins over the command line."""
    single_rate = tmp_path / "single-rate"
    RDCCodec.from_pretrained(codec_run).save_pretrained(single_rate)
    weights = single_rate / "diffusion_pytorch_model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("log_")}, weights,
              metadata={"format": "pt"})

    log = train("codec", "--init", str(single_rate), "--train-dir", str(photos), "--val-dir", str(photos),
                "--output", str(tmp_path / "warm"), "--lmbda-max", "0.02")

    assert json.loads((tmp_path / "warm" / "args.json").read_text())["init"] == str(single_rate)
    codec = RDCCodec.from_pretrained(tmp_path / "warm" / "codec")
    assert codec.config.M == 24 and codec.config.lmbda_max == 0.05  # the init's, not --M or --lmbda-max
    assert torch.isfinite(codec.log_gain).all() and torch.isfinite(codec.log_inverse_gain).all()
    assert log[-1]["val_bpp_q50"] > 0


def test_a_fixed_quality_run_trains_and_validates_one_rate_only(codec_run, photos, tmp_path):
    """The single-rate baseline of the equal-budget comparison: quality 30 lies between the anchors at 0 and 50,
    so the anchor at 100 gets no gradient and keeps its gain."""
    log = train("codec", "--init", str(codec_run), "--train-dir", str(photos), "--val-dir", str(photos),
                "--output", str(tmp_path / "single"), "--fixed-quality", "30")
    assert {k for k in log[-1] if k.startswith("val_")} == {"val_bpp_q30", "val_psnr_q30"}
    before, after = RDCCodec.from_pretrained(codec_run), RDCCodec.from_pretrained(tmp_path / "single" / "codec")
    torch.testing.assert_close(after.log_gain[2], before.log_gain[2], rtol=0, atol=0)
    assert not torch.equal(after.log_gain[:2], before.log_gain[:2])


def test_a_checkpoint_resumes_with_a_new_budget_but_not_with_other_settings(photos, tmp_path):
    common = ["codec", "--train-dir", str(photos), "--val-dir", str(photos), "--output", str(tmp_path / "run"),
              "--N", "16", "--M", "24"]
    train(*common)
    args_file = tmp_path / "run" / "args.json"
    saved = json.loads(args_file.read_text())
    del saved["bases"]  # a run saved before --bases existed resumes: the new option counts as its default
    args_file.write_text(json.dumps(saved))
    log = train(*common, "--iterations", "3", "--mixed-precision", "bf16")  # a longer budget, other hardware
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in log if "loss" in r)
    result = run_script(*common, "--lmbda-max", "0.05")
    assert result.returncode != 0
    assert "holds a checkpoint of another run (--lmbda-max 0.08 there, 0.05 now)" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads((tmp_path / "run" / "args.json").read_text())["lmbda_max"] == 0.08  # left as it was


def test_a_resumed_run_keeps_its_own_learning_rate_but_the_checkpoints_optimizer_state(tmp_path):
    """The checkpoint's lr is where the last run's schedule ended (--final-lr); a new budget runs it again."""
    from accelerate import Accelerator

    script = load_script("examples/train_rdc.py")

    def prepared(lr: float):
        accelerator = Accelerator(cpu=True)
        model = torch.nn.Linear(2, 2)
        return (accelerator, *accelerator.prepare(model, torch.optim.Adam(model.parameters(), lr=lr)))

    accelerator, model, optimizer = prepared(1e-3)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 1e-5
    accelerator.save_state(tmp_path / "checkpoint")
    (tmp_path / "step.json").write_text('{"step": 7}')

    accelerator, model, optimizer = prepared(1e-3)
    assert script.resume(accelerator, tmp_path, optimizer) == 7
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert optimizer.state_dict()["state"][0]["step"] == 1  # Adam's moments came back


def test_the_learning_rate_warms_up_then_drops_in_the_last_fifth(tmp_path):
    """A warm start's fresh Adam first moves every weight by the full lr (its first update is the gradient's sign):
    the lr ramps up linearly over --warmup-steps, for every parameter group, before the last fifth's --final-lr."""
    from accelerate import Accelerator

    script = load_script("examples/train_rdc.py")
    accelerator = Accelerator(cpu=True)
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    optimizer = accelerator.prepare(torch.optim.Adam([{"params": a.parameters()},
                                                      {"params": b.parameters(), "lr": 3e-3}], lr=1e-3))
    seen = []

    def train_step(x):
        seen.append([group["lr"] for group in optimizer.param_groups])
        return {"loss": torch.zeros(())}

    args = argparse.Namespace(output=str(tmp_path), iterations=6, max_minutes=None, warmup_steps=4, final_lr=1e-5,
                              log_every=100, val_every=100)
    script.run_loop(args, accelerator, [torch.zeros(1)] * 10, optimizer, 0, train_step, dict, lambda *_: None)
    expected = [[1e-3 * k / 4, 3e-3 * k / 4] for k in (1, 2, 3, 4)] + [[1e-3, 3e-3], [1e-5, 1e-5]]
    assert [lr for lrs in seen for lr in lrs] == pytest.approx([lr for lrs in expected for lr in lrs])


def test_a_warm_starts_average_uses_the_full_decay_from_the_start():
    """diffusers ramps the EMA decay up as (1 + n)/(10 + n) for random weights; a warm start's are already trained."""
    script = load_script("examples/train_rdc.py")
    parameters = [torch.nn.Parameter(torch.zeros(1))]
    warm = script.ema_model(parameters, argparse.Namespace(ema_decay=0.999, init="some/codec"))
    cold = script.ema_model(parameters, argparse.Namespace(ema_decay=0.999, init=None))
    assert warm.get_decay(100) == 0.999
    assert cold.get_decay(100) == pytest.approx(100 / 109)


def test_a_non_finite_loss_stops_the_run_without_saving(tmp_path):
    """Seen on a CPU without AVX-512 BF16: compiled bfloat16 gave NaN from the first step; nothing is saved then."""
    script = load_script("examples/train_rdc.py")
    args = argparse.Namespace(output=str(tmp_path), iterations=5, max_minutes=None, warmup_steps=0, final_lr=1e-5,
                              log_every=1, val_every=1)
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(SystemExit, match="step 1: the loss is nan; stopped without saving"):
        script.run_loop(args, None, [torch.zeros(1)] * 5, optimizer, 0, lambda x: {"loss": torch.tensor(math.nan)},
                        dict, lambda *_: None)
    assert not (tmp_path / "checkpoint").exists()


def test_the_inter_stage_saves_a_p_frame_codec_for_the_video_pipeline(codec_run, photos, tmp_path):
    out = tmp_path / "inter"
    log = train("inter", "--codec", str(codec_run), "--train-dir", str(photos), "--val-dir", str(photos),
                "--output", str(out), "--N", "8", "--M", "8", "--frames", "3", "--quality", "30")
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert {"val_i_bpp", "val_p_bpp", "val_i_psnr", "val_p_psnr"} <= set(log[-1])  # from real bytes
    tiny = build_tiny_pipeline()  # its unet takes this codec's 24 latent channels
    inter_codec = RDCInterCodec.from_pretrained(out / "inter_codec")
    pipe = RDCVideoPipeline(codec=RDCCodec.from_pretrained(codec_run), unet=tiny.unet, scheduler=tiny.scheduler,
                            inter_codec=inter_codec)
    frames = [random_image(64, 64, seed=s) for s in range(3)]
    assert pipe.decompress(pipe.compress(frames, gop_size=3), refine=False).frame_types == ["I", "P", "P"]
    # The P-frames were trained to continue from I-frames coded at quality 30: clips must use that quality.
    assert inter_codec.config.quality == 30 and pipe.quality == 30
    assert decode_file(pipe.image_pipeline().compress(frames[0])).header.quality == 30


def test_the_refiner_stage_learns_on_standard_decodes_and_saves_a_refiner(codec_run, photos, tmp_path):
    """Issue 13: JPEG / WebP / AVIF decodes of the crops, ŷ from an analysis transform started from the codec's."""
    from rdc_diffusers import RDCRefinerPipeline

    unet = tmp_path / "unet"
    build_tiny_pipeline().unet.save_pretrained(unet)
    out = tmp_path / "refiner"
    args = ["refiner", "--codec", str(codec_run), "--init", str(unet), "--train-dir", str(photos), "--val-dir",
            str(photos), "--output", str(out), "--default-steps", "1", "--adversarial", "0.01",
            "--bases", "jpeg", "jpeg", "webp", "avif"]  # JPEG drawn for half the crops, validated once like the others
    train(*args)
    log = train(*args, "--iterations", "3")  # resumed: the critic and its optimizer are in the checkpoint
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert all(r["critic"] > 0 and r["adversarial"] > 0 for r in log if "loss" in r)  # the GAN term ran
    assert {f"val_lpips_{d}_{b}" for d in ("fast", "1step") for b in ("jpeg25", "webp30", "avif30")} <= set(log[-1])
    pipe = RDCRefinerPipeline.from_pretrained(out / "pipeline")
    assert not torch.equal(pipe.codec.g_a[0].weight, RDCCodec.from_pretrained(codec_run).g_a[0].weight)  # trained
    data = pipe.compress(random_image(64, 64), format="jpeg", quality=30)
    assert pipe.decompress(data, output_type="np").images.shape == (1, 64, 64, 3)


def test_the_refiner_stage_goes_on_from_a_trained_refiner(codec_run, photos, tmp_path):
    """--codec may be a refiner's own codec folder: its trained analysis transform is the start, not the image
    codec's (how the shipped refiner's training is resumed with new settings)."""
    from rdc_diffusers import RDCRefinerPipeline

    trained = build_tiny_refiner(seed=1)
    trained.save_pretrained(tmp_path / "trained")
    out = tmp_path / "refiner"
    train("refiner", "--codec", str(tmp_path / "trained" / "codec"), "--init", str(tmp_path / "trained" / "unet"),
          "--train-dir", str(photos), "--val-dir", str(photos), "--output", str(out), "--iterations", "0")
    pipe = RDCRefinerPipeline.from_pretrained(out / "pipeline")
    for name, start in (("codec", trained.codec), ("unet", trained.unet)):
        saved = getattr(pipe, name).state_dict()
        assert all(torch.equal(saved[k], v) for k, v in start.state_dict().items()), name


def test_refiners_trained_side_by_side_average_into_one(tmp_path):
    """examples/average_weights.py: every floating-point weight of the result is the runs' mean, the result loads
    as a refiner, and runs of another architecture, integer buffers that differ or an existing output are refused."""
    from rdc_diffusers import RDCRefinerPipeline, ResidualUNet

    script = load_script("examples/average_weights.py")
    runs = [build_tiny_refiner(seed=seed) for seed in (1, 2)]
    for i, run in enumerate(runs):
        run.save_pretrained(tmp_path / f"run{i}")
    script.main([str(tmp_path / "run0"), str(tmp_path / "run1"), "--output", str(tmp_path / "soup")])
    soup = RDCRefinerPipeline.from_pretrained(tmp_path / "soup")
    for name in ("codec", "unet"):
        a, b = (getattr(run, name).state_dict() for run in runs)
        for key, value in getattr(soup, name).state_dict().items():
            expected = (a[key] + b[key]) / 2 if value.is_floating_point() else a[key]
            assert torch.allclose(value, expected), f"{name}.{key}"
    assert not torch.equal(soup.unet.cond[0].weight, runs[0].unet.cond[0].weight)
    with pytest.raises(SystemExit, match="exists"):
        script.main([str(tmp_path / "run0"), str(tmp_path / "run1"), "--output", str(tmp_path / "soup")])
    wider = build_tiny_refiner(seed=3)
    wider.unet = ResidualUNet(latent_channels=24, cond_channels=4, block_out_channels=(8, 24), norm_num_groups=4)
    wider.save_pretrained(tmp_path / "wider")
    with pytest.raises(SystemExit, match="configs differ"):
        script.main([str(tmp_path / "run0"), str(tmp_path / "wider"), "--output", str(tmp_path / "mixed")])
    for count, run in enumerate(runs):  # a counter cannot be averaged: it must agree
        run.unet.register_buffer("counter", torch.tensor(count))
    with pytest.raises(SystemExit, match="unet.counter differs"):
        script.average(runs)


def test_image_pipelines_average_their_unets_and_keep_the_frozen_codec_exactly(tmp_path):
    """The residual stage's runs share the frozen codec: the soup keeps it bit for bit (files written with it still
    decode; a mean of equal tensors need not be exact), averages the UNets, and a refiner is not mixed in."""
    from rdc_diffusers import RDCPipeline

    script = load_script("examples/average_weights.py")
    runs = [build_tiny_pipeline(seed=0) for _ in range(3)]
    for seed, run in enumerate(runs):
        torch.manual_seed(seed + 1)
        for weight in run.unet.parameters():
            weight.data += 0.1 * torch.randn_like(weight)
        run.save_pretrained(tmp_path / f"run{seed}")
    script.main([*(str(tmp_path / f"run{i}") for i in range(3)), "--output", str(tmp_path / "soup")])
    soup = RDCPipeline.from_pretrained(tmp_path / "soup")
    assert soup.codec.fingerprint() == runs[0].codec.fingerprint()
    assert all(torch.equal(v, runs[0].codec.state_dict()[k]) for k, v in soup.codec.state_dict().items())
    states = [run.unet.state_dict() for run in runs]
    for key, value in soup.unet.state_dict().items():
        torch.testing.assert_close(value, sum(s[key] for s in states) / 3)
    build_tiny_refiner().save_pretrained(tmp_path / "refiner")
    with pytest.raises(SystemExit, match="different classes"):
        script.main([str(tmp_path / "run0"), str(tmp_path / "refiner"), "--output", str(tmp_path / "mixed")])


def test_base_qualities_narrow_a_codec_s_training_range_and_bad_ranges_are_refused():
    """--base-qualities: the refiner can be trained over part of a codec's range (jpeg=5-60, the range before
    session 27); the crops' files come from that range only, and a malformed range stops the parser."""
    script = load_script("examples/train_rdc.py")
    required = ["refiner", "--train-dir", "photos", "--output", "out"]
    args = script.build_parser().parse_args([*required, "--base-qualities", "jpeg=95-95"])
    ranges = script.base_quality_ranges(args.base_qualities)
    assert ranges == script.BASE_QUALITIES | {"jpeg": (95, 95)}
    x = torch.rand(2, 3, 32, 32)
    _, fine = script.base_decodes(x, ["jpeg", "jpeg"], ranges)
    _, coarse = script.base_decodes(x, ["jpeg", "jpeg"], script.base_quality_ranges(["jpeg=5-5"]))
    assert (fine > coarse).all()  # the quality input follows the files' rate
    for bad in ("jpg=5-60", "jpeg=60-5", "jpeg=5", "jpeg=5-101"):
        with pytest.raises(SystemExit):
            script.build_parser().parse_args([*required, "--base-qualities", bad])


def test_the_critic_scores_patches_and_its_losses_train_the_right_side():
    """The adversarial term (--adversarial): the generator's loss reaches the refined image, the critic's does not."""
    torch.manual_seed(0)
    critic = PatchDiscriminator()
    real, x_init = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    fake = torch.rand(2, 3, 64, 64, requires_grad=True)
    assert critic(real, x_init).shape == (2, 1, 8, 8)  # one logit per patch
    generator, critic_loss = adversarial_losses(critic, real, fake, x_init)
    (grad,) = torch.autograd.grad(generator, fake, retain_graph=True)
    assert grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="not have been used in the graph"):  # the critic's sees fake detached
        torch.autograd.grad(critic_loss, fake)
