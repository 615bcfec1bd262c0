"""The `rdc` command: compress, decompress and inspect `.rdc` files from the shell."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import RDCError

SCHEDULERS = {
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "dpm": "DPMSolverMultistepScheduler",
}


class CLIError(Exception):
    """A problem with what the user asked for (exists, missing, bad option): one line, exit code 2."""


def _int_in(lo: int, hi: int):
    """argparse type: an integer in ``lo..hi`` (what the file header can record), else a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {value}")
        return value

    return parse


SEED = _int_in(0, 2**64 - 1)
STEPS = _int_in(0, 0xFFFF)


def build_parser() -> argparse.ArgumentParser:
    from .pretrained import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="rdc", description="Perceptual image compression with residual diffusion.")
    sub = parser.add_subparsers(dest="command", required=True)

    model_help = f"a folder, a Hugging Face Hub repo id, or a bundled model name (default: {DEFAULT_MODEL})"
    compress = sub.add_parser("compress", help="image -> .rdc file")
    compress.add_argument("input", type=Path)
    compress.add_argument("-o", "--output", type=Path, required=True)
    compress.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    compress.add_argument("--seed", type=SEED, default=0, help="sampling seed stored in the file")
    compress.add_argument("--steps", type=STEPS, default=None, help="default refinement steps stored in the file")
    compress.add_argument("--force", action="store_true", help="overwrite an existing output")

    decompress = sub.add_parser("decompress", help=".rdc file -> image")
    decompress.add_argument("input", type=Path)
    decompress.add_argument("-o", "--output", type=Path, required=True)
    decompress.add_argument("--model", default=DEFAULT_MODEL, help=model_help)
    decompress.add_argument("--fast", action="store_true", help="fidelity decoder only (no diffusion)")
    decompress.add_argument("--steps", type=STEPS, default=None, help="refinement steps (default: from the file)")
    decompress.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None,
                            help="sampler (default: the model's own scheduler)")
    decompress.add_argument("--force", action="store_true", help="overwrite an existing output")

    info = sub.add_parser("info", help="print the header of an .rdc file")
    info.add_argument("input", type=Path)
    return parser


def check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise CLIError(f"{path} already exists (use --force to overwrite)")
    if not path.parent.exists():
        raise CLIError(f"folder {path.parent} does not exist")


def read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CLIError(f"{path}: no such file")
    return path.read_bytes()


def write_atomically(path: Path, write) -> None:
    """Write through a temporary sibling, so a failure never leaves a half-written output behind."""
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_pipeline(model: str):
    from .pipelines.pipeline_rdc import RDCPipeline

    try:
        return RDCPipeline.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot load model {model!r}: {str(err).splitlines()[0]}") from err


def run_compress(args: argparse.Namespace) -> None:
    from .image_io import open_image

    check_output(args.output, args.force)
    if not args.input.is_file():
        raise CLIError(f"{args.input}: no such file")
    image = open_image(args.input)
    pipe = load_pipeline(args.model)
    data = pipe.compress(image, seed=args.seed, num_inference_steps=args.steps)
    write_atomically(args.output, lambda p: p.write_bytes(data))
    bpp = 8 * len(data) / (image.width * image.height)
    print(f"{args.output}: {len(data)} bytes, {bpp:.4f} bpp ({image.width}x{image.height})")


def run_decompress(args: argparse.Namespace) -> None:
    import diffusers

    from .bitstream import decode_file

    check_output(args.output, args.force)
    fmt = _format_for(args.output)
    data = read_bytes(args.input)
    header = decode_file(data).header  # a broken file fails before a model is loaded
    pipe = load_pipeline(args.model)
    if args.scheduler:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[args.scheduler]).from_config(pipe.scheduler.config)
    out = pipe.decompress(data, refine=not args.fast, num_inference_steps=args.steps)
    image = out.images[0]
    write_atomically(args.output, lambda p: image.save(p, format=fmt))
    steps = header.num_inference_steps if args.steps is None else args.steps
    how = "fast" if args.fast or steps == 0 else f"refined, {steps} steps of {type(pipe.scheduler).__name__}"
    print(f"{args.output}: {image.width}x{image.height} {image.mode}, {how}")


def _format_for(path: Path) -> str:
    from PIL import Image

    Image.init()
    fmt = Image.EXTENSION.get(path.suffix.lower())
    if fmt is None:
        raise CLIError(f"unknown image extension {path.suffix!r} for {path} (use .png for lossless output)")
    return fmt


def run_info(args: argparse.Namespace) -> None:
    from .bitstream import decode_file

    data = read_bytes(args.input)
    file = decode_file(data)
    h = file.header
    print(f"file:        {args.input} ({len(data)} bytes, {8 * len(data) / (h.width * h.height):.4f} bpp)")
    print(f"image:       {h.width}x{h.height}, original mode {h.mode}")
    print(f"model:       {h.model_name} (id {h.model_id.hex()})")
    print(f"refinement:  seed {h.seed}, {h.num_inference_steps} steps by default")
    print(f"sections:    {', '.join(str(len(s)) for s in file.sections)} bytes")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # component loading; the sampling bar stays
    run = {"compress": run_compress, "decompress": run_decompress, "info": run_info}[args.command]
    try:
        run(args)
    except (RDCError, CLIError, OSError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"rdc {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(err, CLIError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
