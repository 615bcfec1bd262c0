"""Train an RDC model in two stages with accelerate (one CPU, one GPU, or `accelerate launch` on many).

Stage 1 (`codec`): the codec on rate + λ·MSE plus the entropy bottleneck's aux loss.
Stage 2 (`residual`): the residual UNet on the frozen codec's x_init (`--mode cdc`: the CDC-style baseline
that generates the image from ŷ alone, for the ablation).
Video (`inter`): the P-frame codec on synthetic clips (moving crops of the stills), each clip's first frame
coded by the frozen image codec, the next ones predicted from the previous decoded frame.
Refiner (`refiner`): the residual UNet and an analysis transform on JPEG / WebP / AVIF decodes (issue 13).
`--adversarial` adds a conditional PatchGAN critic's term to the residual and refiner stages' loss.

    python examples/train_rdc.py codec --train-dir ../shared/data/train --lmbda 0.0067 --output runs/codec
    python examples/train_rdc.py residual --codec runs/codec/codec --train-dir ../shared/data/train --output runs/rdc
    python examples/train_rdc.py inter --codec runs/codec/codec --train-dir ../shared/data/train --N 64 --M 96 \
        --output runs/inter

Every run writes `train_log.jsonl` and `args.json` into its output folder, checkpoints with
`accelerator.save_state` into `<output>/checkpoint` (resumed when present and the run's settings are the same;
only the budget, `--iterations`/`--max-minutes`/`--log-every`/`--val-every`, the hardware, `--device`/
`--mixed-precision`, and the folder, `--output`, may change: a copied folder branches the run) and ends with
`save_pretrained`. `--max-minutes` stops cleanly at a wall-clock budget. `ACCELERATE_DYNAMO_BACKEND=inductor` in
the environment makes accelerate compile the model (the codec stage: 1.2× per iteration, docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from PIL import Image

from rdc_diffusers.models.codec import MAX_QUALITY, RDCCodec
from rdc_diffusers.models.residual_unet import PREDICTION_TYPES
from rdc_diffusers.pipelines.refinement import denoising_loop
from rdc_diffusers.training import (
    ImageFolderDataset,
    MovingCropDataset,
    PatchDiscriminator,
    adversarial_losses,
    energy_score,
    list_images,
    lpips_distance,
    psnr,
    rate_distortion_loss,
    warm_start,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["codec", "residual", "inter", "refiner"])
    parser.add_argument("--train-dir", required=True)
    parser.add_argument("--val-dir", default="../shared/data/bsds_test", help="first 4 images, centre 256 crops")
    parser.add_argument("--output", required=True)
    parser.add_argument("--N", type=int, default=128)
    parser.add_argument("--M", type=int, default=192)
    parser.add_argument("--lmbda", type=float, default=0.0067, help="inter stage: its single rate")
    parser.add_argument("--lmbda-min", type=float, default=0.0004, help="codec stage, new codec: λ at quality 0")
    parser.add_argument("--lmbda-max", type=float, default=0.08, help="codec stage, new codec: λ at quality 100")
    parser.add_argument("--gain-levels", type=int, default=6, help="codec stage, new codec: anchor qualities")
    parser.add_argument("--quality", type=float, default=50.0,
                        help="inter stage: the image codec's quality for the I-frames")
    parser.add_argument("--fixed-quality", type=float,
                        help="codec stage: train every crop at this one quality (a single-rate model, for the "
                             "equal-budget comparison) instead of each at a random one; validated there")
    parser.add_argument("--codec", help="residual and inter stages: folder of the trained (frozen) image codec; "
                                        "refiner stage: the codec whose analysis transform starts the refiner's, or a "
                                        "refiner's own codec folder (with --init its unet: go on from that refiner)")
    parser.add_argument("--bases", nargs="+", default=["jpeg", "webp", "avif"],
                        help="refiner stage: the standard codecs whose decodes it learns to refine, each drawn as "
                             "often as it is named (jpeg jpeg webp webp avif: AVIF gets a fifth of the crops)")
    parser.add_argument("--base-qualities", nargs="+", type=base_quality_range, default=[], metavar="NAME=LO-HI",
                        help="refiner stage: the Pillow quality range a base codec is trained over (e.g. jpeg=5-60);"
                             " the others keep BASE_QUALITIES")
    parser.add_argument("--frames", type=int, default=3, help="inter stage: frames per synthetic clip (1 I + P)")
    parser.add_argument("--mode", choices=["residual", "cdc"], default="residual",
                        help="residual stage: RDC's residual r = x − x_init, or the CDC-style ablation that "
                             "generates x from ŷ alone (same UNet, no x_init)")
    parser.add_argument("--init", help="warm start: a codec folder (codec stage) or a unet folder (residual stage) "
                                       "whose weights replace the random initialisation")
    parser.add_argument("--block-out-channels", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--cond-channels", type=int, default=16)
    parser.add_argument("--prediction-type", default="sample", choices=PREDICTION_TYPES)
    parser.add_argument("--rho", type=float, default=0.1,
                        help="weight of LPIPS against the MSE of [-1, 1] images (CDC's ρ; 0.1 won the ablation in "
                             "docs/training.md)")
    parser.add_argument("--energy-score", type=float, default=0.0,
                        help="residual and refiner stages: replace the MSE term by this weight times the energy "
                             "score of two samples per crop (rdc_diffusers.training.energy_score: the loss of a "
                             "sampler, not of a mean; each iteration runs the UNet on both); 0: MSE")
    parser.add_argument("--lpips-energy", action="store_true",
                        help="residual and refiner stages: replace the rho * LPIPS term by rho times the energy score "
                             "in LPIPS's feature space (distance sqrt(LPIPS)) of two samples per crop")
    parser.add_argument("--adversarial", type=float, default=0.0,
                        help="residual and refiner stages: weight of a non-saturating GAN term from a conditional "
                             "PatchGAN critic (rdc_diffusers.training.PatchDiscriminator, trained alongside at 4x "
                             "--lr); 0: none")
    parser.add_argument("--few-step-fraction", type=float, default=0.5,
                        help="residual and refiner stages: share of batches that start where a DDIM sampler of "
                             "--sampler-steps is after running the model itself (the others: a noised true "
                             "residual at a random timestep)")
    parser.add_argument("--sampler-steps", type=int, nargs="+", default=list(SAMPLER_STEPS),
                        help="the DDIM step counts whose own trajectories those batches follow (one at random)")
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--default-steps", type=int, default=2, help="refinement steps written into new files")
    parser.add_argument("--crop-size", type=int, default=128)
    parser.add_argument("--max-upscale", type=float, default=1.0,
                        help="residual and refiner stages: show each crop at a random zoom up to this factor "
                             "(rdc_diffusers.training.ImageFolderDataset; 1: none)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--final-lr", type=float, default=1e-4, help="for the last fifth of the run")
    parser.add_argument("--warmup-steps", type=int, default=200,
                        help="linear learning-rate warmup over the run's first iterations (a fresh Adam's first "
                             "steps move every weight by the full learning rate: a warm start needs this)")
    parser.add_argument("--aux-lr", type=float, default=1e-3)
    parser.add_argument("--gain-lr", type=float, default=1e-3, help="codec stage: the learning rate of the rate gains")
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no",
                        help="accelerate's mixed precision: the transforms in bfloat16 (about 2x faster per iteration "
                             "on this project's AVX-512-BF16 CPU, docs/training.md), entropy models and rounding in "
                             "float32; validation and the saved weights are float32 either way")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: accelerate's choice (a GPU when one is visible); cpu: Accelerator(cpu=True) even "
                             "with a GPU; cuda: stop at once when torch sees no GPU")
    return parser


def parse_base_quality(text: str) -> tuple[str, tuple[int, int]]:
    """``"jpeg=5-60"`` -> ``("jpeg", (5, 60))``; an ``argparse.ArgumentTypeError`` says what is wrong."""
    name, _, span = text.partition("=")
    lo, _, hi = span.partition("-")
    if name not in BASE_QUALITIES or not (lo.isdigit() and hi.isdigit() and int(lo) <= int(hi) <= 100):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=LO-HI with NAME one of {', '.join(BASE_QUALITIES)}"
                                         " and 0 <= LO <= HI <= 100")
    return name, (int(lo), int(hi))


def base_quality_range(text: str) -> str:
    """argparse type of ``--base-qualities``: ``jpeg=5-60`` checked and kept as text (so args.json compares equal)."""
    parse_base_quality(text)
    return text


def base_quality_ranges(specs: list[str]) -> dict[str, tuple[int, int]]:
    """``BASE_QUALITIES`` with the ``--base-qualities`` overrides (``["jpeg=5-60"]``)."""
    return BASE_QUALITIES | dict(map(parse_base_quality, specs))


def parse_args() -> argparse.Namespace:
    return build_parser().parse_args()


def validation_images(val_dir: str, count: int = 4, size: int = 256) -> torch.Tensor:
    """Centre crops of the first images of ``val_dir`` (never Kodak: that is the evaluation set)."""
    crops = []
    for path in list_images(val_dir)[:count]:
        image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
        crops.append(image[:, top:top + size, left:left + size].float() / 255)
    return torch.stack(crops)


VALIDATION_QUALITIES = (10.0, 50.0, 90.0)


@torch.no_grad()
def validate_codec(codec: RDCCodec, images: torch.Tensor, qualities=VALIDATION_QUALITIES) -> dict:
    """Real bytes through the rANS coder at a low, a middle and a high quality: never an estimate."""
    codec.eval()
    scores = {}
    for quality in qualities:
        nbytes, psnrs = 0, []
        for x in images.split(1):
            out = codec.compress(x, quality)
            nbytes += sum(len(s[0]) for s in out["strings"])
            psnrs.append(psnr(codec.decompress(out["strings"], out["shape"], quality)["x_init"], x))
        scores[f"val_bpp_q{quality:g}"] = 8 * nbytes / images[:, 0].numel()
        scores[f"val_psnr_q{quality:g}"] = sum(psnrs) / len(psnrs)
    codec.train()
    return scores


def initial_codec(args: argparse.Namespace, cls: type = RDCCodec):
    """A random codec, or the ``--init`` one in training mode: ``from_pretrained`` returns eval mode, where the
    entropy models round instead of adding noise and the rate term no longer reaches the encoder.

    An ``--init`` saved before a parameter existed (e.g. the single-rate codecs before the gains) loads the
    rest and keeps the new parameter's initialisation."""
    if args.init:
        return warm_start(cls, args.init)
    sizes = {"N": args.N, "M": args.M}
    if cls is RDCCodec:
        sizes |= {"lmbda_min": args.lmbda_min, "lmbda_max": args.lmbda_max, "gain_levels": args.gain_levels}
    return cls(**sizes).train()


def codec_optimizers(model, args: argparse.Namespace) -> tuple[list, torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam on the transforms (the rate gains at ``--gain-lr``: they start from a rule of thumb, not from training),
    and compressai's separate Adam on the entropy bottlenecks' quantiles (aux loss)."""
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    net = [(n, p) for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    gains = [p for n, p in net if n.startswith("log_")]
    net_params = [p for _, p in net]
    groups = [{"params": [p for n, p in net if not n.startswith("log_")]}]
    groups += [{"params": gains, "lr": args.gain_lr}] if gains else []
    return net_params, torch.optim.Adam(groups, lr=args.lr), torch.optim.Adam(aux_params, lr=args.aux_lr)


def codec_update(accelerator: Accelerator, model, loss: torch.Tensor, net_params: list, optimizer, aux_optimizer):
    """One step of both optimizers: the rate-distortion loss (clipped), then the aux loss; returns the aux loss."""
    optimizer.zero_grad()
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(net_params, 1.0)
    optimizer.step()
    aux_loss = accelerator.unwrap_model(model).aux_loss()
    aux_optimizer.zero_grad()
    accelerator.backward(aux_loss)
    aux_optimizer.step()
    return aux_loss


def train_codec(args: argparse.Namespace, accelerator: Accelerator, log) -> None:
    """Stage 1, variable rate: every crop is trained at its own quality, drawn uniformly from [0, 100], with
    the λ that quality stands for. EMA weights (``--ema-decay``) are what validation scores and what is saved."""
    output = Path(args.output)
    codec = initial_codec(args)
    net_params, optimizer, aux_optimizer = codec_optimizers(codec, args)
    ema = ema_model(codec.parameters(), args)
    dataset = ImageFolderDataset(args.train_dir, args.crop_size, repeat=100)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
    codec, optimizer, aux_optimizer, loader = accelerator.prepare(codec, optimizer, aux_optimizer, loader)
    model = accelerator.unwrap_model(codec)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    step = resume(accelerator, output, optimizer)
    val_images = validation_images(args.val_dir).to(accelerator.device)

    def train_step(x: torch.Tensor) -> dict:
        if args.fixed_quality is None:
            quality = torch.rand(x.shape[0], device=x.device) * MAX_QUALITY
        else:
            quality = torch.full((x.shape[0],), args.fixed_quality, device=x.device)
        out = codec(x, quality)
        losses = rate_distortion_loss(out["likelihoods"], out["x_init"], x, model.lmbda(quality))
        aux = codec_update(accelerator, codec, losses["loss"], net_params, optimizer, aux_optimizer)
        ema.step(codec.parameters())
        return losses | {"aux": aux}

    def validate() -> dict:
        qualities = VALIDATION_QUALITIES if args.fixed_quality is None else (args.fixed_quality,)
        with ema_weights(ema, model):
            return validate_codec(model, val_images, qualities)

    run_loop(args, accelerator, loader, optimizer, step, train_step, validate, log)
    if accelerator.is_main_process:
        ema.copy_to(model.parameters())
        model._tables_stale = True
        model.save_pretrained(output / "codec")


def ema_model(parameters, args: argparse.Namespace):
    """EMA weights at ``--ema-decay``. diffusers' ``EMAModel`` ramps its decay up as (1 + n)/(10 + n), so a run's
    average covers only its last ~n/10 steps until step ~10,000: right for random weights, which are worth nothing,
    but a warm start's weights are the trained model, so its average uses the full decay from the first step (as a
    resumed checkpoint's does)."""
    from diffusers.training_utils import EMAModel

    return EMAModel(parameters, decay=args.ema_decay, min_decay=args.ema_decay if args.init else 0.0)


@contextmanager
def ema_weights(ema, model):
    """The EMA weights inside ``model`` for the ``with`` block (a codec's entropy tables follow its weights)."""
    codec = hasattr(model, "_tables_stale")
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    if codec:
        model._tables_stale = True
    try:
        yield
    finally:
        ema.restore(model.parameters())
        if codec:
            model._tables_stale = True


def train_inter(args: argparse.Namespace, accelerator: Accelerator, log) -> None:
    """Video: the P-frame codec learns to code frame k against its own decoded frame k − 1.

    Loss: the sum over the P-frames of rate + λ·MSE. Frame 0 is the frozen image codec's decoded output,
    as at decode time; the gradient stops at each reference (as in the SSF paper), so a clip of n frames
    trains n − 1 P-frame steps whose references carry the model's own coding errors.
    """
    from rdc_diffusers.models.inter_codec import RDCInterCodec

    output = Path(args.output)
    codec = RDCCodec.from_pretrained(args.codec).eval().requires_grad_(False)
    model = initial_codec(args, RDCInterCodec)
    model.register_to_config(quality=args.quality)  # the I-frame quality it learns to continue from
    net_params, optimizer, aux_optimizer = codec_optimizers(model, args)
    dataset = MovingCropDataset(args.train_dir, args.crop_size, frames=args.frames, repeat=100)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
    model, optimizer, aux_optimizer, loader = accelerator.prepare(model, optimizer, aux_optimizer, loader)
    codec.to(accelerator.device)
    step = resume(accelerator, output, optimizer)
    val_clips = torch.stack([MovingCropDataset(args.val_dir, 192, frames=args.frames)[i] for i in range(4)])

    def train_step(clip: torch.Tensor) -> dict:
        with torch.no_grad():
            x_ref = codec(clip[:, 0], args.quality)["x_init"].clamp(0, 1)
        losses = []
        for k in range(1, clip.shape[1]):
            out = model(clip[:, k], x_ref)
            losses.append(rate_distortion_loss(out["likelihoods"], out["x_hat"], clip[:, k], args.lmbda))
            x_ref = out["x_hat"].detach().clamp(0, 1)
        mean = {key: sum(loss[key] for loss in losses) / len(losses) for key in losses[0]}
        return mean | {"aux": codec_update(accelerator, model, mean["loss"], net_params, optimizer, aux_optimizer)}

    run_loop(args, accelerator, loader, optimizer, step, train_step,
             lambda: validate_inter(codec, accelerator.unwrap_model(model), val_clips.to(accelerator.device),
                                    args.quality), log)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(output / "inter_codec")


@torch.no_grad()
def validate_inter(codec: RDCCodec, model, clips: torch.Tensor, quality: float) -> dict:
    """Real bytes: bpp and PSNR of the I-frames and of the P-frames of a few held-out synthetic clips."""
    model.eval()
    bits, scores = {"i": 0, "p": 0}, {"i": [], "p": []}
    for clip in clips:
        coded = codec.compress(clip[:1], quality)
        x_ref = codec.decompress(coded["strings"], coded["shape"], quality)["x_init"]
        bits["i"] += 8 * sum(len(s[0]) for s in coded["strings"])
        scores["i"].append(psnr(x_ref, clip[:1]))
        for x in clip[1:].split(1):
            coded = model.compress(x, x_ref)
            x_ref = model.decompress(coded["strings"], coded["shape"], x_ref)["x_hat"]
            bits["p"] += 8 * sum(len(s[0]) for s in coded["strings"])
            scores["p"].append(psnr(x_ref, x))
    model.train()
    pixels = clips[0, 0, 0].numel()
    return {f"val_{kind}_bpp": bits[kind] / (pixels * len(scores[kind])) for kind in bits} | {
        f"val_{kind}_psnr": sum(scores[kind]) / len(scores[kind]) for kind in scores}


SAMPLER_STEPS = (1, 2, 4, 8)
"""The DDIM step counts whose own trajectories the residual UNet is trained on (issue 12: steps 1-8)."""


@torch.no_grad()
def sampler_state(scheduler, model, noise: torch.Tensor, cond: dict, steps: int, k: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where an N-step DDIM sampler really is before its step k (0-based): r_t after the model itself ran k steps
    from pure noise, in the pipelines' own loop (``denoising_loop``), and that step's timestep (one per image).

    A noised true residual q(r_t | r) is not what the model meets at step k: there r_t is built from its own
    earlier (smoother) predictions, and a model trained only on q(r_t | r) got worse with every step it took
    (LPIPS 0.197 / 0.207 / 0.235 / 0.265 at 1 / 2 / 4 / 8 steps). The last step's prediction is the decoded
    residual, so training it here trains the N-step output itself.
    """
    scheduler.set_timesteps(steps, device=noise.device)
    residual = denoising_loop(model, scheduler, noise * scheduler.init_noise_sigma, scheduler.timesteps[:k], cond)
    return residual, scheduler.timesteps[k].expand(noise.shape[0])


@torch.no_grad()
def residual_scale(codec: RDCCodec, loader, batches: int = 20) -> float:
    """1 / std of r = x − x_init on training crops at random qualities, so the scaled residual has unit
    variance like the noise (averaged over the rates: low qualities leave larger residuals)."""
    residuals = []
    for x, _ in zip(loader, range(batches), strict=False):
        residuals.append(x - codec(x, torch.rand(x.shape[0]) * MAX_QUALITY)["x_init"].clamp(0, 1))
    return 1.0 / torch.cat(residuals).std().item()


def train_residual(args: argparse.Namespace, accelerator: Accelerator, log) -> None:
    """Stage 2: the codec is frozen; the UNet learns r from noised r_t, given x_init, ŷ and the quality
    (one UNet for every rate: each crop is coded at its own quality, drawn uniformly from [0, 100]).

    Loss, as CDC's x0 variant, on the predicted image x̂0 = x_init + r̂0: MSE(x̂0, x) on [-1, 1] images
    + ρ·LPIPS(x̂0, x); ρ was chosen by the ablation in docs/training.md.
    ``--mode cdc`` replaces x_init by mid-grey and the UNet's x_init input by nothing (see ``ResidualUNet``).
    Half of the batches (``--few-step-fraction``) start where a 1-8 step DDIM sampler really is, from the
    model's own earlier steps (``sampler_state``); the others at a uniform timestep of a noised true residual.
    """
    from diffusers import DDIMScheduler

    from rdc_diffusers import RDCPipeline, ResidualUNet
    from rdc_diffusers.pipelines.pipeline_rdc import DEFAULT_SCHEDULER_CONFIG

    output = Path(args.output)
    codec = RDCCodec.from_pretrained(args.codec).eval().requires_grad_(False)
    dataset = ImageFolderDataset(args.train_dir, args.crop_size, repeat=100, max_upscale=args.max_upscale)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
    cdc = args.mode == "cdc"
    if args.init:  # keeps its residual_scale: the units its weights were trained in
        unet = warm_start(ResidualUNet, args.init)
    else:
        if cdc:  # CDC-style: the image itself, mapped to [-1, 1]
            scale = 2.0
        else:  # the codec's residuals on the photos as they are (not zoomed: the zoom makes them smaller)
            unzoomed = torch.utils.data.DataLoader(ImageFolderDataset(args.train_dir, args.crop_size, repeat=100),
                                                   batch_size=args.batch_size, shuffle=True, drop_last=True)
            scale = residual_scale(codec, unzoomed)
        unet = ResidualUNet(
            latent_channels=codec.config.M, cond_channels=args.cond_channels,
            block_out_channels=tuple(args.block_out_channels), prediction_type=args.prediction_type,
            residual_scale=scale, residual=not cdc,
        )
    unet, loader, optimizer, ema, noise_scheduler, sampler, critic, step = denoiser_training(args, accelerator, unet,
                                                                                              loader)
    codec.to(accelerator.device)
    val_images = validation_images(args.val_dir).to(accelerator.device)

    def make_pipeline(model: ResidualUNet) -> RDCPipeline:
        scheduler = DDIMScheduler(**DEFAULT_SCHEDULER_CONFIG, prediction_type=args.prediction_type)
        pipe = RDCPipeline(codec=codec, unet=model, scheduler=scheduler, default_num_inference_steps=args.default_steps)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def train_step(x: torch.Tensor) -> dict:
        quality = torch.rand(x.shape[0], device=x.device) * MAX_QUALITY
        with torch.no_grad():
            coded = codec(x, quality)
            x_init, y_hat = coded["x_init"].clamp(0, 1), coded["y_hat"]
        cond = {"x_init": x_init, "y_hat": y_hat, "quality": quality}
        losses = residual_losses(args, unet, noise_scheduler, sampler, x, cond, critic)
        return denoiser_update(accelerator, unet, optimizer, ema, losses, critic)

    def validate() -> dict:
        with ema_weights(ema, accelerator.unwrap_model(unet)):
            return validate_residual(make_pipeline(accelerator.unwrap_model(unet)), val_images)

    log(step, {"residual_scale": unet.config.residual_scale, "params": sum(p.numel() for p in unet.parameters())})
    run_loop(args, accelerator, loader, optimizer, step, train_step, validate, log)
    if accelerator.is_main_process:
        unet = accelerator.unwrap_model(unet)
        ema.copy_to(unet.parameters())
        make_pipeline(unet).save_pretrained(output / "pipeline")


BASE_QUALITIES = {"jpeg": (5, 95), "webp": (0, 95), "avif": (0, 95)}
"""Pillow qualities each base codec is trained over (uniformly): from about 0.1 bpp to the near-lossless files people
keep (JPEG 95: 3.9 bpp on BSDS test photos). Until session 27 training stopped at JPEG 60, WebP 70, AVIF 65, and the
refiner damaged the files above that it had never seen (JPEG 95: -4.7 dB, LPIPS 0.001 -> 0.007)."""
BASE_VALIDATION_QUALITIES = {"jpeg": (10, 25, 50, 90), "webp": (5, 30, 60, 90), "avif": (5, 30, 55, 90)}


def base_decodes(x: torch.Tensor, formats: list[str], ranges: dict[str, tuple[int, int]] = BASE_QUALITIES
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop of ``x`` coded by its base codec at a random quality of its range and decoded by Pillow, as a
    receiver of the file decodes it: ``(x_init, quality)``, the UNet's quality input (``BaseCodec.file_quality``)."""
    from rdc_diffusers import BaseCodec

    decoded, quality = [], []
    for crop, name in zip(x, formats, strict=True):
        lo, hi = ranges[name]
        picture = Image.fromarray((crop * 255).round().byte().permute(1, 2, 0).cpu().numpy())
        data = BaseCodec.encode(picture, name, int(torch.randint(lo, hi + 1, ()).item()))
        decoded.append(BaseCodec.decode(data)[0])
        quality.append(BaseCodec.file_quality(data, crop.shape[-1], crop.shape[-2]))
    return torch.cat(decoded).to(x.device), torch.tensor(quality, device=x.device)


def train_refiner(args: argparse.Namespace, accelerator: Accelerator, log) -> None:
    """Issue 13: the residual UNet (``--init``) and an analysis transform (from ``--codec``'s) learn to refine
    JPEG / WebP / AVIF decodes: each crop is coded by a random one of ``--bases`` at a random quality, ŷ is the
    analysis transform of its decode (computed by the receiver: no bits), the quality input comes from the rate of
    the file's coded pixels (``BaseCodec.file_quality``). The loss is the residual stage's; the UNet keeps its
    ``residual_scale``."""
    from diffusers import DDIMScheduler

    from rdc_diffusers import BaseCodec, RDCRefinerPipeline, ResidualUNet

    if not args.init or not args.codec:
        raise SystemExit("the refiner stage starts from a trained model: give --init (a unet) and --codec")
    output = Path(args.output)
    if BaseCodec.load_config(args.codec)["_class_name"] == BaseCodec.__name__:
        base = warm_start(BaseCodec, args.codec)  # a refiner's own: training goes on from a shipped refiner
    else:
        image_codec = RDCCodec.from_pretrained(args.codec)
        base = BaseCodec(N=image_codec.config.N, M=image_codec.config.M)
        base.g_a.load_state_dict(image_codec.g_a.state_dict())
    unet = warm_start(ResidualUNet, args.init)
    models = torch.nn.ModuleDict({"unet": unet, "codec": base})
    dataset = ImageFolderDataset(args.train_dir, args.crop_size, repeat=100, max_upscale=args.max_upscale)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
    models, loader, optimizer, ema, noise_scheduler, sampler, critic, step = denoiser_training(args, accelerator,
                                                                                               models, loader)
    val_images = validation_images(args.val_dir).to(accelerator.device)
    ranges = base_quality_ranges(args.base_qualities)

    def make_pipeline(models: torch.nn.ModuleDict) -> RDCRefinerPipeline:
        pipe = RDCRefinerPipeline(codec=models["codec"], unet=models["unet"], scheduler=DDIMScheduler.from_config(
            noise_scheduler.config), default_num_inference_steps=args.default_steps)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def train_step(x: torch.Tensor) -> dict:
        formats = [args.bases[i] for i in torch.randint(len(args.bases), (x.shape[0],)).tolist()]
        x_init, quality = base_decodes(x, formats, ranges)
        cond = {"x_init": x_init, "y_hat": models["codec"](x_init), "quality": quality}
        losses = residual_losses(args, models["unet"], noise_scheduler, sampler, x, cond, critic)
        return denoiser_update(accelerator, models, optimizer, ema, losses, critic)

    def validate() -> dict:
        with ema_weights(ema, accelerator.unwrap_model(models)):
            return validate_refiner(make_pipeline(accelerator.unwrap_model(models)), val_images,
                                    list(dict.fromkeys(args.bases)))

    log(step, {"residual_scale": unet.config.residual_scale, "params": sum(p.numel() for p in models.parameters())})
    run_loop(args, accelerator, loader, optimizer, step, train_step, validate, log)
    if accelerator.is_main_process:
        models = accelerator.unwrap_model(models)
        ema.copy_to(models.parameters())
        make_pipeline(models).save_pretrained(output / "pipeline")


@torch.no_grad()
def validate_refiner(pipe, images: torch.Tensor, bases: list[str]) -> dict:
    """PSNR and LPIPS of each base codec's plain decode and of the one-step refined one, from real files."""
    from rdc_diffusers.metrics.lpips import lpips

    pipe.unet.eval()
    scores = {}
    for name in bases:
        for quality in BASE_VALIDATION_QUALITIES[name]:
            files = [pipe.compress(x, format=name, quality=quality) for x in images]
            scores[f"val_bpp_{name}{quality}"] = sum(8 * len(f) for f in files) / images[:, 0].numel()
            for decode, kwargs in (("fast", {"refine": False}), ("1step", {"num_inference_steps": 1})):
                out = torch.cat([pipe.decompress(f, output_type="pt", **kwargs).images for f in files])
                scores[f"val_psnr_{decode}_{name}{quality}"] = psnr(out.to(images.device), images)
                scores[f"val_lpips_{decode}_{name}{quality}"] = lpips(out.to(images.device), images).mean().item()
    pipe.unet.train()
    return scores


@dataclass
class Critic:
    """The adversarial term's discriminator and its optimizer (``--adversarial``)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer


def denoiser_training(args: argparse.Namespace, accelerator: Accelerator, trained: torch.nn.Module, loader):
    """What the residual and refiner stages set up alike: the noise schedule and its DDIM sampler (for the UNet's
    prediction type), EMA weights and AdamW over ``trained``, the critic with ``--adversarial``, accelerate, and the
    step of a checkpoint to resume.
    Returns ``(trained, loader, optimizer, ema, noise_scheduler, sampler, critic or None, step)``."""
    from diffusers import DDIMScheduler, DDPMScheduler

    from rdc_diffusers.pipelines.pipeline_rdc import DEFAULT_SCHEDULER_CONFIG

    unet = trained["unet"] if isinstance(trained, torch.nn.ModuleDict) else trained
    noise_scheduler = DDPMScheduler(**DEFAULT_SCHEDULER_CONFIG, prediction_type=unet.config.prediction_type)
    ema = ema_model(trained.parameters(), args)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=args.lr)
    trained, optimizer, loader = accelerator.prepare(trained, optimizer, loader)
    critic = None
    if args.adversarial:
        discriminator = PatchDiscriminator()
        # Four times the denoiser's rate, the two time-scale rule (Heusel et al. 2017): at --lr a fresh critic was
        # still at chance (loss ≈ 2·log 2) after 550 iterations.
        critic_optimizer = torch.optim.AdamW(discriminator.parameters(), lr=4 * args.lr, betas=(0.5, 0.999))
        critic = Critic(*accelerator.prepare(discriminator, critic_optimizer))
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    step = resume(accelerator, Path(args.output), optimizer)
    sampler = DDIMScheduler.from_config(noise_scheduler.config)
    return trained, loader, optimizer, ema, noise_scheduler, sampler, critic, step


def denoiser_update(accelerator: Accelerator, trained: torch.nn.Module, optimizer, ema, losses: dict,
                    critic: Critic | None) -> dict:
    """One step of the denoiser's optimizer on ``losses["loss"]`` (clipped, then the EMA), then one of the critic's
    on ``losses["critic"]`` (after: the denoiser's backward also reached the critic's weights). Returns ``losses``."""
    optimizer.zero_grad()
    accelerator.backward(losses["loss"])
    accelerator.clip_grad_norm_(trained.parameters(), 1.0)
    optimizer.step()
    ema.step(trained.parameters())
    if critic is not None:
        critic.optimizer.zero_grad()
        accelerator.backward(losses["critic"])
        critic.optimizer.step()
    return losses


def residual_losses(args: argparse.Namespace, unet, noise_scheduler, sampler, x: torch.Tensor, cond: dict,
                    critic: Critic | None = None) -> dict:
    """The residual stage's loss for clean crops ``x`` given what the decoder has (``cond``: x_init, ŷ, quality).

    Half of the batches (``--few-step-fraction``) start where a 1-8 step DDIM sampler really is, after the model's
    own earlier steps (``sampler_state``); the others at a uniform timestep of a noised true residual. The loss is
    taken on the predicted image x̂0 = base(x_init) + r̂0: MSE of [-1, 1] images + ρ·LPIPS (CDC's x0 variant), or
    with ``--energy-score`` that weight times the energy score of two samples per crop in place of the MSE (with
    ``--lpips-energy`` the energy score in LPIPS's feature space in place of the LPIPS term),
    with a ``critic`` + ``--adversarial``·its non-saturating generator loss (and ``"critic"``: the critic's own loss).
    """
    from accelerate.utils import extract_model_from_parallel

    from rdc_diffusers.metrics.lpips import lpips

    model = extract_model_from_parallel(unet)
    scale = model.config.residual_scale
    two_samples = args.energy_score or args.lpips_energy
    if two_samples:  # two samples of each crop, each from its own noise
        x, cond = torch.cat([x, x]), {k: torch.cat([v, v]) for k, v in cond.items()}
    base = model.base(cond["x_init"])
    noise = torch.randn_like(x)
    if torch.rand(()) < args.few_step_fraction:
        steps = args.sampler_steps[torch.randint(len(args.sampler_steps), ()).item()]
        r_t, t = sampler_state(sampler, model, noise, cond, steps, k=torch.randint(steps, ()).item())
    else:
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (x.shape[0],), device=x.device)
        r_t = noise_scheduler.add_noise((x - base) * scale, noise, t)
    pred = unet(r_t, t, **cond).sample
    x0 = base + predicted_sample(noise_scheduler, pred, r_t, t) / scale
    mse = image_mse(x0, x)
    if args.lpips_energy:
        perceptual = energy_score(*x0.clamp(0, 1).chunk(2), x[: len(x) // 2], lpips_distance)
    else:
        perceptual = lpips(x0.clamp(0, 1), x).mean() if args.rho else torch.zeros(())
    losses = {"loss": mse + args.rho * perceptual, "mse": mse}
    losses["lpips_energy" if args.lpips_energy else "lpips"] = perceptual
    if two_samples:
        a, b = (2 * x0).chunk(2)
        losses["spread"] = (a - b).detach().pow(2).mean().sqrt()  # RMS between the two samples: 0 for a mean
    if args.energy_score:
        losses["energy"] = energy_score(a, b, 2 * x[: len(a)])
        losses["loss"] = args.energy_score * losses["energy"] + args.rho * perceptual
    if critic is not None:
        losses["adversarial"], losses["critic"] = adversarial_losses(critic.model, x, x0.clamp(0, 1), cond["x_init"])
        losses["loss"] = losses["loss"] + args.adversarial * losses["adversarial"]
    return losses


@torch.no_grad()
def validate_residual(pipe, images: torch.Tensor, steps: tuple[int, ...] = SAMPLER_STEPS,
                      qualities: tuple[float, ...] = VALIDATION_QUALITIES) -> dict:
    """PSNR and LPIPS of x_init and of refined decodes at a few step counts and qualities, from real bytes."""
    from rdc_diffusers.metrics.lpips import lpips

    pipe.unet.eval()
    scores = {}
    for quality in qualities:
        files = [pipe.compress(x, quality=quality) for x in images]
        for name, kwargs in [("fast", {"refine": False})] + [(f"{n}step", {"num_inference_steps": n}) for n in steps]:
            out = torch.cat([pipe.decompress(f, output_type="pt", **kwargs).images for f in files]).to(images.device)
            scores[f"val_psnr_{name}_q{quality:g}"] = psnr(out, images)
            scores[f"val_lpips_{name}_q{quality:g}"] = lpips(out, images).mean().item()
    pipe.unet.train()
    return scores


def image_mse(x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MSE between images mapped to [-1, 1], CDC's distortion term, so ``--rho`` is CDC's ρ.

    Not the MSE of the scaled residual: that is ``residual_scale²/4`` (≈ 120) times larger and made LPIPS
    negligible at ρ = 0.9 (the loss weighting before issue 12).
    """
    return torch.nn.functional.mse_loss(2 * x0, 2 * x)


def predicted_sample(scheduler, model_output: torch.Tensor, sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """r̂0 from the model's output for any prediction type (the quantity the perceptual loss sees)."""
    if scheduler.config.prediction_type == "sample":
        return model_output
    alpha = scheduler.alphas_cumprod.to(sample.device)[t].view(-1, 1, 1, 1)
    if scheduler.config.prediction_type == "epsilon":
        return (sample - (1 - alpha).sqrt() * model_output) / alpha.sqrt()
    return alpha.sqrt() * sample - (1 - alpha).sqrt() * model_output  # v_prediction


def run_loop(args, accelerator, loader, optimizer, step: int, train_step, validate, log) -> None:
    """The loop all stages share: lr warmup, lr drop in the last fifth, logging, validation + checkpoint, time
    budget."""
    output = Path(args.output)
    start = time.time()
    learning_rates = [group["lr"] for group in optimizer.param_groups]
    while step < args.iterations:
        for x in loader:
            if late_phase(step, args, start):
                for group in optimizer.param_groups:
                    group["lr"] = args.final_lr
            elif step < args.warmup_steps:
                for group, lr in zip(optimizer.param_groups, learning_rates, strict=True):
                    group["lr"] = lr * (step + 1) / args.warmup_steps
            losses = train_step(x)
            step += 1
            if not torch.isfinite(losses["loss"]):
                raise SystemExit(
                    f"step {step}: the loss is {losses['loss'].item()}; stopped without saving (the weights it "
                    f"updated are not finite either). {output / 'checkpoint'} holds the last validated step, if "
                    "any. With --mixed-precision bf16, check that this CPU has AVX-512 BF16 (docs/training.md).")
            done = step >= args.iterations or (
                args.max_minutes is not None and time.time() - start > 60 * args.max_minutes)
            if step % args.log_every == 0:
                log(step, {k: v.item() for k, v in losses.items()})
            if step % args.val_every == 0 or done:
                log(step, validate())
                accelerator.save_state(output / "checkpoint")
                save_step(output, step)
            if done:
                return


def late_phase(step: int, args: argparse.Namespace, start: float) -> bool:
    """The last fifth of the run, by iterations or by the wall-clock budget, whichever ends first."""
    late_time = args.max_minutes is not None and time.time() - start > 0.8 * 60 * args.max_minutes
    return step >= 0.8 * args.iterations or late_time


def resume(accelerator: Accelerator, output: Path, optimizer) -> int:
    """The step of ``output``'s checkpoint, loaded, or 0. The learning rates stay this run's own: the checkpoint's
    are where the last run's schedule ended (``--final-lr`` once it reached its last fifth), and a resumed run with
    a new budget runs the schedule again."""
    if (output / "checkpoint").exists():
        learning_rates = [group["lr"] for group in optimizer.param_groups]
        accelerator.load_state(output / "checkpoint")
        for group, lr in zip(optimizer.param_groups, learning_rates, strict=True):
            group["lr"] = lr
        return json.loads((output / "step.json").read_text())["step"]
    return 0


BUDGET_ARGS = {"iterations", "max_minutes", "log_every", "val_every", "device", "mixed_precision", "output"}
"""What may change when a run is resumed (its budget, the hardware it runs on, and its folder: a copied folder
branches the run); any other difference means the folder holds another run."""


def check_same_run(output: Path, args: argparse.Namespace) -> None:
    """Refuse to resume a checkpoint made with other settings (it would silently ignore the new ``--lmbda``,
    ``--init``, ...) and to append to that run's log."""
    if not (output / "checkpoint").exists() or not (output / "args.json").exists():
        return
    before = json.loads((output / "args.json").read_text())
    # An option added to this script after that run was saved counts as its default there.
    parser = build_parser()
    before = {k: before.get(k, parser.get_default(k)) for k in vars(args)}
    changed = [f"--{k.replace('_', '-')} {before[k]} there, {v} now"
               for k, v in vars(args).items() if k not in BUDGET_ARGS and before[k] != v]
    if changed:
        raise SystemExit(f"{output} holds a checkpoint of another run ({'; '.join(changed)}): "
                         "choose another --output, or delete that folder to start over")


def save_step(output: Path, step: int) -> None:
    (output / "step.json").write_text(json.dumps({"step": step}))


def main() -> None:
    args = parse_args()
    accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision=args.mixed_precision)
    if args.device == "cuda" and accelerator.device.type != "cuda":
        raise SystemExit("--device cuda: torch sees no CUDA device here (use --device cpu or auto)")
    set_seed(args.seed)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    check_same_run(output, args)
    (output / "args.json").write_text(json.dumps(vars(args), indent=2))
    start = time.time()

    def log(step: int, values: dict) -> None:
        if accelerator.is_main_process:
            record = {"stage": args.stage, "step": step, "minutes": round((time.time() - start) / 60, 2)} | values
            with open(output / "train_log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)

    stages = {"codec": train_codec, "residual": train_residual, "inter": train_inter, "refiner": train_refiner}
    stages[args.stage](args, accelerator, log)


if __name__ == "__main__":
    main()
