"""Session 21's probe (needs checkerboard.patch applied): how much the checkerboard context saves on the shipped
transforms when it trains alone.

Everything but ``context_prediction`` / ``entropy_parameters`` frozen, Adam at LR on the rate-distortion loss of
random 256² crops at random qualities for MINUTES, then the training script's validation (real bytes) with the
correction on and zeroed. Run from the repository root:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/results/checkerboard_context/frozen_probe.py 1e-3 12
"""

import sys
import time

import torch

sys.path.insert(0, "examples")
from train_rdc import validate_codec, validation_images  # noqa: E402

from rdc_diffusers import RDCCodec  # noqa: E402
from rdc_diffusers.training import ImageFolderDataset, rate_distortion_loss, warm_start  # noqa: E402

CONTEXT = ("context_prediction", "entropy_parameters")


def main(lr: float, minutes: float) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    codec = warm_start(RDCCodec, "src/rdc_diffusers/bundled/rdc-bsds/codec")
    codec.requires_grad_(False)
    params = [p for n, p in codec.named_parameters() if n.startswith(CONTEXT)]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    crops = ImageFolderDataset("../shared/data/train", 256, repeat=100)
    start, step = time.time(), 0
    for x in torch.utils.data.DataLoader(crops, batch_size=4, shuffle=True):
        quality = torch.rand(4) * 100
        out = codec(x, quality)
        losses = rate_distortion_loss(out["likelihoods"], out["x_init"], x, codec.lmbda(quality))
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        step += 1
        if step % 50 == 0:
            print(step, round((time.time() - start) / 60, 1), round(losses["bpp"].item(), 4), flush=True)
        if time.time() - start > 60 * minutes:
            break
    codec.eval()
    val = validation_images("../shared/data/bsds_test")
    for label in ("on", "off"):
        if label == "off":
            torch.nn.init.zeros_(codec.entropy_parameters[-1].weight)
            torch.nn.init.zeros_(codec.entropy_parameters[-1].bias)
        codec._tables_stale = True
        print(label, {k: round(v, 4) for k, v in validate_codec(codec, val).items()}, flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]))
