"""Store a trained RDC pipeline with float16 weights, if decoding stays within a PSNR budget of float32.

    python examples/export_fp16.py runs/rdc/pipeline --output src/rdc_diffusers/bundled/rdc-bsds \
        --data ../shared/data/kodak

With ``--inter-codec``, only the video inter codec is exported, into ``<output>/inter_codec`` beside the image
model ``<output>`` it was trained with, checked on the frames of ``--data`` (a clip) coded with P-frames:

    python examples/export_fp16.py src/rdc_diffusers/bundled/rdc-bsds --inter-codec runs/inter/inter_codec \
        --data ../shared/data/video/BasketballPass_416x240 --output src/rdc_diffusers/bundled/rdc-bsds --force

With ``--refiner``, a refiner pipeline (``train_rdc.py refiner``) is exported into ``<output>/refiner`` beside the
image model, checked on ``--data`` coded as JPEG, WebP and AVIF at Pillow quality 30 (plain and refined decodes):

    python examples/export_fp16.py src/rdc_diffusers/bundled/rdc-bsds --refiner runs/refiner/pipeline \
        --limit 8 --output src/rdc_diffusers/bundled/rdc-bsds --force

Only the *storage* is float16: the parameters are rounded to float16 and saved that way, and loading
upcasts them to float32 again (the codec always runs in float32, see ``RDCCodec.from_pretrained``). The
rounded weights *are* the shipped model, so the entropy tables are rebuilt from them before saving, and
the file fingerprint covers them: encoder and decoder always agree.

The check compresses every image of ``--data`` with the float32 and with the rounded model at each of
``--qualities`` (a low, the default and a high rate), decodes fast and refined (the model's default steps), and
refuses to write unless the mean PSNR of every decode at every quality drops by at most ``--max-drop`` dB
(issue 3 asks for 0.05). Buffers (GDN pedestals, the scale table, the CDF tables) are
not parameters and stay as they are. The measurement is written to ``<output>/training/fp16_check.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation.scoring import evaluate_pipeline
from rdc_diffusers.training import list_images

WEIGHTS = "diffusion_pytorch_model.safetensors"


def round_to_half(pipe: RDCPipeline) -> RDCPipeline:
    """A copy whose codec and unet parameters are float16 values (held in float32), tables rebuilt."""
    rounded = copy.deepcopy(pipe)
    for model in (rounded.codec, rounded.unet):
        round_parameters(model)
    rounded.codec.update(force=True)
    return rounded


def round_parameters(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every parameter rounded to a float16 value (held in float32); buffers stay as they are."""
    for param in model.parameters():
        param.data = param.data.half().float()
    return model


def forget_origin(folder: Path) -> None:
    """Drop ``_name_or_path`` from the configs below ``folder``: where it was loaded from is no part of the model."""
    for config in folder.glob("**/*.json"):
        values = json.loads(config.read_text())
        if values.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def store_parameters_as_half(model: torch.nn.Module, folder: Path) -> None:
    """Rewrite ``folder``'s safetensors file with the parameters in float16 and everything else untouched."""
    names = {name for name, _ in model.named_parameters()}
    path = folder / WEIGHTS
    tensors = load_file(path)
    save_file({k: v.half() if k in names else v for k, v in tensors.items()}, path, metadata={"format": "pt"})


def mean_of(records: list[dict], key: str, decode: str, quality: float) -> float:
    return statistics.fmean(r[key] for r in records if r["decode"] == decode and r["quality"] == quality)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="pipeline folder (float32) or bundled name")
    parser.add_argument("--output", type=Path, required=True, help="folder to write (must not exist unless --force)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--max-drop", type=float, default=0.05, help="largest allowed mean PSNR drop in dB")
    parser.add_argument("--qualities", type=float, nargs="+", default=[10.0, 50.0, 90.0])
    parser.add_argument("--default-steps", type=int, default=None,
                        help="refinement steps new files record (default: keep the model's); chosen from validation")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--inter-codec", type=Path, default=None, help="export this inter codec (see above)")
    parser.add_argument("--refiner", type=Path, default=None, help="export this refiner pipeline (see above)")
    args = parser.parse_args()
    if args.inter_codec is not None:
        return export_inter_codec(args)
    if args.refiner is not None:
        return export_refiner(args)
    if args.output.exists() and not args.force:
        raise SystemExit(f"{args.output} exists; pass --force to overwrite it")

    pipe = RDCPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.default_steps is not None:
        pipe.register_to_config(default_num_inference_steps=args.default_steps)
    half = round_to_half(pipe)
    paths = list_images(args.data)[: args.limit]
    decodes = {"fast": {"refine": False}, "refined": {}}
    full = evaluate_pipeline(pipe, paths, decodes=decodes, quality=args.qualities, fid=False, log=print)
    rounded = evaluate_pipeline(half, paths, decodes=decodes, quality=args.qualities, fid=False, log=print)
    report = {"images": len(paths), "data": str(args.data), "max_drop_db": args.max_drop, "qualities": {}}
    for quality in sorted({r["quality"] for r in full}):
        row = {f"psnr_{d}_{name}": mean_of(recs, "psnr", d, quality)
               for name, recs in (("fp32", full), ("fp16", rounded)) for d in decodes}
        row |= {f"bpp_{name}": mean_of(recs, "bpp", "fast", quality)
                for name, recs in (("fp32", full), ("fp16", rounded))}
        row["psnr_drop_db"] = max(row[f"psnr_{d}_fp32"] - row[f"psnr_{d}_fp16"] for d in decodes)
        report["qualities"][f"{quality:g}"] = row
    report["psnr_drop_db"] = max(row["psnr_drop_db"] for row in report["qualities"].values())
    print(json.dumps(report, indent=2))
    if report["psnr_drop_db"] > args.max_drop:
        raise SystemExit(f"float16 storage costs {report['psnr_drop_db']:.3f} dB > {args.max_drop} dB; not written")

    half.save_pretrained(args.output)
    for name in ("codec", "unet"):
        store_parameters_as_half(getattr(half, name), args.output / name)
    forget_origin(args.output)
    (args.output / "README.md").unlink()  # the card with measured numbers is model_cards/<name>.md
    reloaded = RDCPipeline.from_pretrained(args.output)
    if reloaded.codec.fingerprint() != half.codec.fingerprint():
        raise SystemExit("the float16 files do not reload to the measured model; not trusted")
    (args.output / "training").mkdir(exist_ok=True)
    (args.output / "training" / "fp16_check.json").write_text(json.dumps(report, indent=2) + "\n")


def export_inter_codec(args: argparse.Namespace) -> None:
    """Round the inter codec's parameters to float16; keep them if the clip's PSNR (GOP 8) drops by <= max_drop."""
    from rdc_diffusers import RDCInterCodec, RDCVideoPipeline
    from rdc_diffusers.media.video_io import read_video
    from rdc_diffusers.metrics.quality import psnr

    target = args.output / "inter_codec"
    if target.exists() and not args.force:
        raise SystemExit(f"{target} exists; pass --force to overwrite it")
    image = RDCPipeline.from_pretrained(args.model)
    full = RDCInterCodec.from_pretrained(args.inter_codec)
    half = round_parameters(copy.deepcopy(full))
    half.update(force=True)
    frames = read_video(args.data, max_frames=args.limit).frames
    source = torch.stack([torch.from_numpy(np.array(f)).permute(2, 0, 1) for f in frames]).float() / 255
    report = {"frames": len(frames), "data": str(args.data), "gop_size": 8, "max_drop_db": args.max_drop}
    for name, inter in (("fp32", full), ("fp16", half)):
        pipe = RDCVideoPipeline(codec=image.codec, inter_codec=inter, unet=image.unet, scheduler=image.scheduler,
                                default_num_inference_steps=image.config.default_num_inference_steps)
        pipe.set_progress_bar_config(disable=True)
        data = pipe.compress(frames, gop_size=8)
        for decode, kwargs in (("fast", {"refine": False}), ("refined", {})):
            decoded = pipe.decompress(data, output_type="pt", **kwargs).frames
            report[f"psnr_{decode}_{name}"] = statistics.fmean(
                psnr(decoded[t : t + 1], source[t : t + 1]) for t in range(len(frames)))
        report[f"bpp_{name}"] = 8 * len(data) / (source[0, 0].numel() * len(frames))
    report["psnr_drop_db"] = max(report[f"psnr_{d}_fp32"] - report[f"psnr_{d}_fp16"] for d in ("fast", "refined"))
    print(json.dumps(report, indent=2))
    if report["psnr_drop_db"] > args.max_drop:
        raise SystemExit(f"float16 storage costs {report['psnr_drop_db']:.3f} dB > {args.max_drop} dB; not written")
    half.save_pretrained(target)
    store_parameters_as_half(half, target)
    forget_origin(target)
    if RDCInterCodec.from_pretrained(target).fingerprint() != half.fingerprint():
        raise SystemExit("the float16 files do not reload to the measured model; not trusted")
    (args.output / "training").mkdir(exist_ok=True)
    (args.output / "training" / "inter_fp16_check.json").write_text(json.dumps(report, indent=2) + "\n")


def export_refiner(args: argparse.Namespace) -> None:
    """Round the refiner's parameters (analysis transform and unet) to float16; keep them if its refined decodes of
    JPEG / WebP / AVIF files lose at most ``--max-drop`` dB of mean PSNR."""
    from rdc_diffusers import RDCRefinerPipeline
    from rdc_diffusers.media.image_io import open_image, to_tensor
    from rdc_diffusers.media.standard_codecs import FORMATS
    from rdc_diffusers.metrics.quality import psnr

    target = args.output / "refiner"
    if target.exists() and not args.force:
        raise SystemExit(f"{target} exists; pass --force to overwrite it")
    full = RDCRefinerPipeline.from_pretrained(args.refiner)
    full.set_progress_bar_config(disable=True)
    half = copy.deepcopy(full)
    for model in (half.codec, half.unet):
        round_parameters(model)
    images = [open_image(p) for p in list_images(args.data)[: args.limit]]
    report = {"images": len(images), "data": str(args.data), "quality": 30, "max_drop_db": args.max_drop}
    for base in FORMATS:
        files = [full.compress(image, format=base, quality=30) for image in images]
        for name, pipe in (("fp32", full), ("fp16", half)):
            report[f"psnr_refined_{base}_{name}"] = statistics.fmean(
                psnr(pipe.decompress(data, output_type="pt").images, to_tensor(image)[0])
                for data, image in zip(files, images, strict=True))
    report["psnr_drop_db"] = max(report[f"psnr_refined_{b}_fp32"] - report[f"psnr_refined_{b}_fp16"] for b in FORMATS)
    print(json.dumps(report, indent=2))
    if report["psnr_drop_db"] > args.max_drop:
        raise SystemExit(f"float16 storage costs {report['psnr_drop_db']:.3f} dB > {args.max_drop} dB; not written")
    half.save_pretrained(target)
    for name in ("codec", "unet"):
        store_parameters_as_half(getattr(half, name), target / name)
    forget_origin(target)
    (target / "README.md").unlink(missing_ok=True)  # the model's card is model_cards/<name>.md
    (target / "pipeline.py").unlink(missing_ok=True)
    (args.output / "training").mkdir(exist_ok=True)
    (args.output / "training" / "refiner_fp16_check.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
