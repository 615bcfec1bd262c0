"""Store a trained RDC pipeline with float16 weights, if decoding stays within a PSNR budget of float32.

    python examples/export_fp16.py runs/rdc_q3/pipeline --output src/rdc_diffusers/bundled/rdc-bsds-q3 \
        --data ../shared/data/kodak

Only the *storage* is float16: the parameters are rounded to float16 and saved that way, and loading
upcasts them to float32 again (the codec always runs in float32, see ``RDCCodec.from_pretrained``). The
rounded weights *are* the shipped model, so the entropy tables are rebuilt from them before saving, and
the file fingerprint covers them: encoder and decoder always agree.

The check compresses every image of ``--data`` with the float32 and with the rounded model, decodes fast and
refined (the model's default steps), and refuses to write unless the mean PSNR of both decodes drops by at
most ``--max-drop`` dB (issue 3 asks for 0.05). Buffers (GDN pedestals, the scale table, the CDF tables) are
not parameters and stay as they are. The measurement is written to ``<output>/training/fp16_check.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rdc_diffusers import RDCPipeline
from rdc_diffusers.evaluation import evaluate_pipeline
from rdc_diffusers.training import list_images

WEIGHTS = "diffusion_pytorch_model.safetensors"


def round_to_half(pipe: RDCPipeline) -> RDCPipeline:
    """A copy whose codec and unet parameters are float16 values (held in float32), tables rebuilt."""
    rounded = copy.deepcopy(pipe)
    for model in (rounded.codec, rounded.unet):
        for param in model.parameters():
            param.data = param.data.half().float()
    rounded.codec.update(force=True)
    return rounded


def store_parameters_as_half(model: torch.nn.Module, folder: Path) -> None:
    """Rewrite ``folder``'s safetensors file with the parameters in float16 and everything else untouched."""
    names = {name for name, _ in model.named_parameters()}
    path = folder / WEIGHTS
    tensors = load_file(path)
    save_file({k: v.half() if k in names else v for k, v in tensors.items()}, path, metadata={"format": "pt"})


def mean_psnr(records: list[dict], decode: str) -> float:
    return statistics.fmean(r["psnr"] for r in records if r["decode"] == decode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="pipeline folder (float32) or bundled name")
    parser.add_argument("--output", type=Path, required=True, help="folder to write (must not exist unless --force)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--max-drop", type=float, default=0.05, help="largest allowed mean PSNR drop in dB")
    parser.add_argument("--default-steps", type=int, default=None,
                        help="refinement steps new files record (default: keep the model's); chosen from validation")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    if args.output.exists() and not args.force:
        raise SystemExit(f"{args.output} exists; pass --force to overwrite it")

    pipe = RDCPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.default_steps is not None:
        pipe.register_to_config(default_num_inference_steps=args.default_steps)
    half = round_to_half(pipe)
    paths = list_images(args.data)[: args.limit]
    decodes = {"fast": {"refine": False}, "refined": {}}
    full = evaluate_pipeline(pipe, paths, decodes=decodes, log=print)
    rounded = evaluate_pipeline(half, paths, decodes=decodes, log=print)
    report = {
        "images": len(paths),
        "data": str(args.data),
        "max_drop_db": args.max_drop,
        **{f"psnr_{d}_fp32": mean_psnr(full, d) for d in decodes},
        **{f"psnr_{d}_fp16": mean_psnr(rounded, d) for d in decodes},
        **{f"bpp_{name}": statistics.fmean(r["bpp"] for r in recs if r["decode"] == "fast")
           for name, recs in (("fp32", full), ("fp16", rounded))},
    }
    report["psnr_drop_db"] = max(report[f"psnr_{d}_fp32"] - report[f"psnr_{d}_fp16"] for d in decodes)
    print(json.dumps(report, indent=2))
    if report["psnr_drop_db"] > args.max_drop:
        raise SystemExit(f"float16 storage costs {report['psnr_drop_db']:.3f} dB > {args.max_drop} dB; not written")

    half.save_pretrained(args.output)
    for name in ("codec", "unet"):
        store_parameters_as_half(getattr(half, name), args.output / name)
    for config in args.output.glob("**/*.json"):  # where it was loaded from is no part of the model
        values = json.loads(config.read_text())
        if values.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    (args.output / "README.md").unlink()  # the card with measured numbers is model_cards/<name>.md
    reloaded = RDCPipeline.from_pretrained(args.output)
    if reloaded.codec.fingerprint() != half.codec.fingerprint():
        raise SystemExit("the float16 files do not reload to the measured model; not trusted")
    (args.output / "training").mkdir(exist_ok=True)
    (args.output / "training" / "fp16_check.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
