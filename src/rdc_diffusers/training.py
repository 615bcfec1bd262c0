"""Reusable pieces of the training recipe: the image-crop and moving-crop datasets, the rate–distortion loss and the
refiners' realism critic."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from .media.image_io import IMAGE_SUFFIXES
from .metrics.quality import psnr  # noqa: F401 (re-exported: the training script imports it from here)


def list_images(root: str | Path) -> list[Path]:
    """Image files directly inside ``root``, sorted so every process sees the same order."""
    files = sorted(p for p in Path(root).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root}")
    return files


class ImageFolderDataset(torch.utils.data.Dataset):
    """Random ``crop_size`` crops with horizontal flips from a folder of photos.

    The photos are decoded once and kept in memory as uint8 (300 BSDS images take ~140 MB), so
    an epoch costs no JPEG decoding; ``repeat`` makes one epoch visit every photo several times.
    ``max_upscale`` > 1 shows each crop at a random zoom in [1, max_upscale] (log-uniform; a smaller patch, bicubic
    up to ``crop_size``): BSDS photos (481×321) are busier per pixel than the 768×512 pictures a model is used on
    (Kodak is ~1.6× their scale), and a model trained at one scale generalises worse to the other.
    """

    def __init__(self, root: str | Path, crop_size: int = 128, repeat: int = 1, max_upscale: float = 1.0):
        if max_upscale < 1:
            raise ValueError(f"max_upscale must be at least 1, got {max_upscale}")
        self.crop_size = crop_size
        self.repeat = repeat
        self.max_upscale = max_upscale
        self.images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                       for p in list_images(root)]
        if any(min(im.shape[1:]) < crop_size for im in self.images):
            raise ValueError(f"every image in {root} must be at least {crop_size} px on each side")

    def __len__(self) -> int:
        return len(self.images) * self.repeat

    def __getitem__(self, index: int) -> Tensor:
        image = self.images[index % len(self.images)]
        _, h, w = image.shape
        size = self.crop_size
        if self.max_upscale > 1:  # draws nothing otherwise: runs without the zoom keep their crop sequence
            size = round(self.crop_size / math.exp(random.uniform(0.0, math.log(self.max_upscale))))
        top, left = random.randint(0, h - size), random.randint(0, w - size)
        crop = image[:, top:top + size, left:left + size].float()
        if size != self.crop_size:
            crop = F.interpolate(crop[None], size=(self.crop_size, self.crop_size), mode="bicubic",
                                 align_corners=False)[0].clamp(0, 255)
        if random.random() < 0.5:
            crop = crop.flip(-1)
        return crop / 255.0


class MovingCropDataset(ImageFolderDataset):
    """Short synthetic clips from still photos: ``frames`` crops under a steady random pan, zoom and rotation.

    Each clip draws a per-frame shift of up to ``max_shift`` px, a zoom of up to ±3 % and a rotation of up to
    ±1.5° per frame, and samples frame k of the photo under k times that motion (bilinear, around the
    crop's centre). A random sub-pixel offset on every frame, the first included, keeps the resampling blur
    equal across frames. Returns ``(frames, 3, crop, crop)`` in [0, 1].
    """

    def __init__(self, root: str | Path, crop_size: int = 128, frames: int = 3, max_shift: float = 6.0,
                 repeat: int = 1):
        super().__init__(root, crop_size, repeat)
        self.frames = frames
        self.max_shift = max_shift

    def __getitem__(self, index: int) -> Tensor:
        image = self.images[index % len(self.images)].float() / 255.0
        if random.random() < 0.5:
            image = image.flip(-1)
        _, h, w = image.shape
        shift = torch.empty(2).uniform_(-self.max_shift, self.max_shift)
        zoom, angle = random.uniform(-0.03, 0.03), math.radians(random.uniform(-1.5, 1.5))
        # The crop's corners travel at most this far from its first position over the clip.
        reach = (self.frames - 1) * (self.max_shift + self.crop_size * (0.03 + 0.03)) + 1
        margin = self.crop_size / 2 + reach
        if min(h, w) < 2 * margin:
            raise ValueError(f"images must be at least {2 * margin:.0f} px on each side for {self.frames}-frame clips")
        centre = torch.tensor([random.uniform(margin, w - margin), random.uniform(margin, h - margin)])
        offset = torch.linspace(-(self.crop_size - 1) / 2, (self.crop_size - 1) / 2, self.crop_size)
        grid_y, grid_x = torch.meshgrid(offset, offset, indexing="ij")
        points = torch.stack([grid_x, grid_y], -1)  # (crop, crop, 2) in pixels around the centre
        clips = []
        for k in range(self.frames):
            cos, sin, scale = math.cos(k * angle), math.sin(k * angle), (1 + zoom) ** k
            rotation = torch.tensor([[cos, -sin], [sin, cos]]) * scale
            source = points @ rotation.T + centre + k * shift + torch.rand(2) - 0.5
            # grid_sample's normalised coordinates (align_corners=False): pixel centres at (2i + 1) / size − 1.
            grid = (2 * source + 1) / torch.tensor([w, h]) - 1
            clips.append(F.grid_sample(image[None], grid[None], mode="bilinear", align_corners=False)[0])
        return torch.stack(clips).clamp(0, 1)


def rate_distortion_loss(likelihoods: dict[str, Tensor], x_hat: Tensor, x: Tensor,
                         lmbda: float | Tensor) -> dict[str, Tensor]:
    """``bpp + λ·255²·MSE(x_hat, x)``, the compressai convention for λ, averaged over the batch.

    ``lmbda`` is one value, or one per image (a variable-rate codec trains each image at its own rate).
    """
    pixels = x.shape[2] * x.shape[3]
    bpp = sum(torch.log(lk).flatten(1).sum(1) for lk in likelihoods.values()) / (-math.log(2) * pixels)
    mse = F.mse_loss(x_hat, x, reduction="none").flatten(1).mean(1)
    loss = bpp + torch.as_tensor(lmbda, device=x.device) * 255**2 * mse
    return {"loss": loss.mean(), "bpp": bpp.mean(), "mse": mse.mean()}


def warm_start(cls: type, folder: str | Path):
    """``cls`` built from ``folder``'s config with its own initialisation, then ``folder``'s weights loaded over it.

    ``from_pretrained`` leaves parameters the folder lacks uninitialised (diffusers skips the init functions
    while loading); a warm start from a model saved before a parameter existed (the single-rate codec before
    the rate gains, a unet before the quality embedding) needs them initialised as ``__init__`` does.
    Returns the model in training mode.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    model = cls.from_config(cls.load_config(folder))
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{folder} holds weights that {cls.__name__} does not have: {', '.join(unexpected[:5])}")
    return model.train()


class PatchDiscriminator(nn.Module):
    """The realism critic of the denoisers' optional adversarial term (``train_rdc.py --adversarial``, issue 12).

    A conditional PatchGAN (Isola et al. 2017) of the kind HiFiC (Mentzer et al. 2020) uses for generative
    compression: it scores every ~30 px patch, and it sees ``x_init`` (what the decoder has) beside the image, so it
    judges the detail the residual adds rather than the content. Spectral norm (Miyato et al. 2018) keeps it
    Lipschitz without a gradient penalty. Used in training only; nothing of it is shipped.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        layers, width = [], 6
        for out in channels:
            layers += [spectral_norm(nn.Conv2d(width, out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            width = out
        self.net = nn.Sequential(*layers, spectral_norm(nn.Conv2d(width, 1, 3, padding=1)))

    def forward(self, x: Tensor, x_init: Tensor) -> Tensor:
        """Logits (real vs generated) per patch for images ``x`` in [0, 1] given their ``x_init``."""
        return self.net(torch.cat([x, x_init], 1) * 2 - 1)


def adversarial_losses(critic: PatchDiscriminator, real: Tensor, fake: Tensor, x_init: Tensor
                       ) -> tuple[Tensor, Tensor]:
    """The non-saturating GAN losses (Goodfellow et al. 2014) of ``(generator, critic)``: the generator's reaches
    ``fake``'s graph; the critic's sees ``fake`` detached."""
    generator = F.softplus(-critic(fake, x_init)).mean()
    critic_loss = F.softplus(-critic(real, x_init)).mean() + F.softplus(critic(fake.detach(), x_init)).mean()
    return generator, critic_loss


def rms_distance(u: Tensor, v: Tensor) -> Tensor:
    """Per-image root mean square of ``u − v``; the epsilon keeps the gradient finite where the two coincide."""
    return ((u - v).flatten(1).pow(2).mean(1) + 1e-12).sqrt()


def lpips_distance(u: Tensor, v: Tensor) -> Tensor:
    """Per-image √LPIPS of images in [0, 1]: LPIPS is a squared Euclidean distance between weighted, normalised
    network features, so its root is a distance in that feature space (the energy score needs a metric's distance)."""
    from .metrics.lpips import lpips

    return (lpips(u, v) + 1e-12).sqrt()


def energy_score(a: Tensor, b: Tensor, x: Tensor, distance=rms_distance) -> Tensor:
    """The energy score (Gneiting & Raftery 2007, β = 1) of the two samples ``a``, ``b`` drawn for each image ``x``:
    E d(X, x) − ½ E d(X, X′), with d the root mean square over an image's pixels (or ``lpips_distance``, to score
    the samples' distribution in LPIPS's feature space instead of pixels); mean over the batch.

    A strictly proper scoring rule: only a sampler of the true conditional distribution minimises it, where MSE is
    minimised by that distribution's mean. That is why a denoiser trained on MSE returns a residual shrunk toward the
    mean (issue 12); the second term pays for the spread MSE takes away. Distributional diffusion models train their
    few-step denoisers with it (De Bortoli et al. 2025).
    """
    return (0.5 * (distance(a, x) + distance(b, x)) - 0.5 * distance(a, b)).mean()
