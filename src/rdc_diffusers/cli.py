"""The `rdc` command: compress, decompress and inspect `.rdc` images and `.rdcv` clips from the shell."""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path

from . import __version__
from .errors import CLIError, RateTargetError, RDCError
from .media.atomic_write import write_atomically
from .media.standard_codecs import FORMATS as BASE_CODECS
from .schedulers import SCHEDULERS, TEMPORAL_NOISE, use_scheduler
from .text import plural

SCHEDULER_OPTION = {"choices": list(SCHEDULERS), "metavar": "NAME", "default": None,
                    "help": f"sampler: {', '.join(SCHEDULERS)} (default: the model's own scheduler)"}


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


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def parse_quality(text: str) -> float:
    """argparse type: a quality in 0..100 (the pipeline rounds it to hundredths, as the file stores it)."""
    value = _number(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be in 0..100, got {text}")
    return value


def parse_strength(text: str) -> float:
    """argparse type: a refinement strength in 0..1 (the pipeline rounds it to hundredths)."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in 0..1 (0: the fast decode, 1: full refinement), got {text}")
    return value


def parse_bpp(text: str) -> float:
    """argparse type: a positive bits-per-pixel target."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of bits per pixel, got {text}")
    return value


SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
"""``--size`` units, case-insensitive: SI prefixes are powers of 1000 (KB), binary ones powers of 1024 (KiB)."""


def parse_size(text: str) -> int:
    """argparse type: a file size such as ``20000``, ``20KB``, ``20kB``, ``1.5MB`` or ``20KiB`` -> whole bytes.

    A fractional number of bytes is rounded down (the size is a budget: at most this many bytes).
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: give bytes, or a number with a unit: B, KB, MB, GB (powers of 1000) or "
            f"KiB, MiB, GiB (powers of 1024), e.g. 20KB, 1.5MB, 20KiB")
    size = math.floor(Decimal(match.group(1)) * SIZE_UNITS[unit])
    if size < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return size


def parse_pixels(text: str) -> float:
    """argparse type: a positive pixel count, or ``none`` for no limit."""
    if text.strip().lower() == "none":
        return math.inf
    value = _number(text)
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels (or 'none'), got {text}")
    return value


MAX_PIXELS_OPTION = {"type": parse_pixels, "default": None, "metavar": "N",
                     "help": "largest image (or video frame) to code or decode, in pixels, checked before any work; "
                             "'none' for no limit (default: rdc_diffusers.limits.MAX_IMAGE_PIXELS, 33.2 MP)"}


def build_parser() -> argparse.ArgumentParser:
    from .hub.pretrained import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="rdc", description="Perceptual image compression with residual diffusion.")
    parser.add_argument("--version", action="version", version=f"rdc-diffusers {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # The options several commands share, each defined once.
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"a folder, a Hugging Face Hub repo id, or a bundled model name (default: {DEFAULT_MODEL})")
    encoding = argparse.ArgumentParser(add_help=False)
    encoding.add_argument("--seed", type=SEED, default=0, help="sampling seed stored in the file")
    encoding.add_argument("--steps", type=STEPS, default=None, help="default refinement steps stored in the file")
    decoding = argparse.ArgumentParser(add_help=False)
    decoding.add_argument("--fast", action="store_true", help="the codecs' decode only (no diffusion)")
    decoding.add_argument("--steps", type=STEPS, default=None,
                          help="refinement steps (default: from the file, or the model's)")
    decoding.add_argument("--scheduler", **SCHEDULER_OPTION)
    force = argparse.ArgumentParser(add_help=False)
    force.add_argument("--force", action="store_true", help="overwrite existing outputs")
    files = argparse.ArgumentParser(add_help=False, parents=[force])
    files.add_argument("--max-pixels", **MAX_PIXELS_OPTION)

    compress = sub.add_parser("compress", parents=[model, encoding, files],
                              help="image -> .rdc file at a quality or a rate target (or a folder of images -> a "
                                   "folder of .rdc files)")
    compress.add_argument("input", type=Path, help="an image, or a folder (then -o is a folder; data-parallel "
                                                  "under accelerate launch)")
    compress.add_argument("-o", "--output", type=Path, required=True)
    compress.add_argument("--strength", type=parse_strength, default=None, metavar="S",
                          help="default refinement strength stored in the file, 0..1 (0: the fast decode, 1: the "
                               "full diffusion sample; default: the model's)")
    compress.add_argument("--encoder-steps", type=STEPS, default=0, metavar="N",
                          help="optimise each image's latent over N steps before coding it: fewer bits for the "
                               "same PSNR, at ~1.6 s a step for a 768x512 image on one core (the file decodes as "
                               "any other; default 0: none)")
    rate = compress.add_mutually_exclusive_group()
    compress.add_argument("--base", choices=BASE_CODECS, default=None,
                          help="write a standard file of this codec instead of an .rdc (any viewer decodes it; "
                               "rdc refine refines it); --quality is then the codec's own, an integer 0..100")
    rate.add_argument("--quality", type=parse_quality, default=None, metavar="Q",
                      help="rate setting 0..100, in hundredths (higher: more bytes and fidelity; default: the "
                           "model's default quality)")
    rate.add_argument("--bpp", type=parse_bpp, default=None, metavar="B",
                      help="rate control: the highest quality whose whole file is at most B bits per pixel")
    rate.add_argument("--size", type=parse_size, default=None, metavar="S",
                      help="rate control: the highest quality whose file is at most S bytes (per image), "
                           "e.g. 20000, 20KB, 1.5MB, 20KiB (KB = 1000 bytes, KiB = 1024)")

    decompress = sub.add_parser("decompress", parents=[model, decoding, files],
                                help=".rdc file -> image (or a folder of .rdc files -> a folder of PNGs)")
    decompress.add_argument("input", type=Path, help="an .rdc file, or a folder (then -o is a folder; data-parallel "
                                                    "under accelerate launch)")
    decompress.add_argument("-o", "--output", type=Path, required=True)
    decompress.add_argument("--strength", type=parse_strength, default=None, metavar="S",
                            help="fidelity <-> realism, 0..1: how much of the sampled detail to add (0: the fast "
                                 "decode, 1: all of it; default: from the file)")

    video = sub.add_parser("compress-video", parents=[model, encoding, files],
                           help="clip (mp4, y4m, ... or a folder of frames) -> .rdcv file")
    video.add_argument("input", type=Path, help="a video file PyAV can read, or a folder of frame images")
    video.add_argument("-o", "--output", type=Path, required=True)
    video.add_argument("--gop", type=_int_in(1, 0xFFFF), default=8, help="an I-frame every GOP frames (default: 8)")
    video.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder (default: 25; "
                                                               "video files: their own)")
    video.add_argument("--max-frames", type=_int_in(1, 100_000), default=None, help="only the first N frames")
    video.add_argument("--quality", type=parse_quality, default=None, metavar="Q",
                       help="the model's video quality only (its P-frame codec has a single rate; default: that one)")

    unvideo = sub.add_parser("decompress-video", parents=[model, decoding, files],
                             help=".rdcv file -> mp4 (and PNG frames)")
    unvideo.add_argument("input", type=Path)
    unvideo.add_argument("-o", "--output", type=Path, required=True, help="video file (.mp4)")
    unvideo.add_argument("--frames-dir", type=Path, default=None, help="also write every frame as PNG here")
    unvideo.add_argument("--temporal-noise", choices=TEMPORAL_NOISE, default="shared",
                         help="refinement noise: one field for every frame (default), or new per frame")

    refine = sub.add_parser("refine", parents=[model, decoding, files],
                            help="JPEG / WebP / AVIF file -> the image refined by residual diffusion")
    refine.add_argument("input", type=Path, help="a .jpg, .webp or .avif file, or a folder of them")
    refine.add_argument("-o", "--output", type=Path, required=True,
                        help="image file (.png for lossless); for a folder, a folder (OUTDIR/<stem>.png)")
    refine.add_argument("--strength", type=parse_strength, default=None, metavar="S",
                        help="fidelity <-> realism, 0..1 (0: the plain decode; default: the model's)")
    refine.add_argument("--seed", type=SEED, default=0,
                        help="noise seed (the file stores none): the same seed gives the same pixels (default: 0)")

    info = sub.add_parser("info", help="print the header of an .rdc or .rdcv file")
    info.add_argument("input", type=Path)

    evaluate = sub.add_parser("eval", parents=[model, decoding, force],
                              help="score a model on a folder of images (data-parallel under accelerate)")
    evaluate.add_argument("folder", type=Path)
    evaluate.add_argument("-o", "--output", type=Path, default=Path("results.json"),
                          help="JSON result file; the CSV goes beside it (default: results.json)")
    evaluate.add_argument("--seed", type=SEED, default=0, help="sampling seed written into the files")
    evaluate.add_argument("--qualities", type=parse_quality, nargs="+", default=None, metavar="Q",
                          help="codec qualities 0..100, one rate point of the model's curve each (default: the "
                               "model's default quality)")
    evaluate.add_argument("--no-fid", action="store_true", help="skip patch FID/KID (the slowest metric on a CPU)")
    evaluate.add_argument("--limit", type=_int_in(1, 2**31), default=None, help="only the first N images by name")

    bdrate = sub.add_parser("bdrate", help="BD-rates (PSNR, LPIPS) of every curve against every other, across "
                                           "result files (one curve's points may come from several files)")
    bdrate.add_argument("results", type=Path, nargs="+", help="result files (JSON), e.g. one `rdc eval` file per model")

    plot = sub.add_parser("plot", parents=[force], help="bpp-PSNR and bpp-LPIPS charts of result files (PNG)")
    plot.add_argument("results", type=Path, nargs="+", help="result files (JSON)")
    plot.add_argument("-o", "--output", type=Path, required=True, help="folder for rd_psnr.png and rd_lpips.png")

    demo = sub.add_parser("demo", help="serve the Gradio demo locally (needs rdc-diffusers[demo])")
    demo.add_argument("--port", type=_int_in(1, 65535), default=None, help="default: Gradio's (7860 or the next free)")
    demo.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: the whole network)")
    demo.add_argument("--share", choices=["yes", "no"], default="no", help="also open a public gradio.live link")
    demo.add_argument("--model", action="append", default=None,
                      help="a model to offer (repeatable; default: every bundled model)")
    return parser


def check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise CLIError(f"{path} already exists (use --force to overwrite)")
    if not path.parent.exists():
        raise CLIError(f"folder {path.parent} does not exist")


def output_file(args: argparse.Namespace, suffix: str) -> Path:
    """``-o`` for one input file: a file name, or an existing folder to write ``<input stem><suffix>`` into (the
    names a folder input gets), checked as :func:`check_output` checks it."""
    path = args.output / f"{args.input.stem}{suffix}" if args.output.is_dir() else args.output
    check_output(path, args.force)
    return path


def output_folder(args: argparse.Namespace, paths: list[Path], suffix: str, collision: str) -> list[Path]:
    """``OUTDIR/<stem><suffix>`` for each input of a folder command, checked before any work: distinct names, a
    folder (or a new one in an existing parent), nothing overwritten without ``--force``."""
    targets = [args.output / f"{p.stem}{suffix}" for p in paths]
    if len(set(targets)) < len(targets):
        raise CLIError(f"{args.input}: {collision}")
    if args.output.exists() and not args.output.is_dir():
        raise CLIError(f"{args.output} is not a folder (a folder input needs a folder output)")
    if not args.output.parent.exists():
        raise CLIError(f"folder {args.output.parent} does not exist")
    existing = [t for t in targets if t.exists()]
    if existing and not args.force:
        raise CLIError(f"{existing[0]} already exists (and {len(existing) - 1} more; use --force to overwrite)")
    return targets


def read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CLIError(f"{path}: no such file")
    return path.read_bytes()


def load_pipeline(model: str, kind: str = "image"):
    """The model a command names, with the CLI's progress bars; a model that cannot load is the user's problem."""
    from .pipelines import load_pipeline

    try:
        return load_pipeline(model, kind, **PROGRESS)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot load model {model!r}: {str(err).splitlines()[0]}") from err


PROGRESS = {"disable": None, "leave": False}
"""tqdm settings of every bar the CLI shows (tiles of a large image, sampling steps, frames, files): only on a
terminal (``disable=None``; ``TQDM_DISABLE=1`` turns them off there too), gone when done."""


def files_progress(items: list, current) -> Iterable:
    """A bar over the files of a folder command, in the main process of ``accelerate launch`` only."""
    from tqdm.auto import tqdm

    return tqdm(items, unit="file", **(PROGRESS if current.is_main_process else {"disable": True}))


def rate_options(args: argparse.Namespace, width: int, height: int) -> dict:
    """``compress()`` keyword arguments for the rate options: a quality, a target bpp, or neither (the default).

    ``--size`` becomes this image's target bpp: ``8 · (bytes + ½) / pixels``, so that the pipeline's byte budget
    ``floor(target_bpp · pixels / 8)`` gives the size back exactly (``8 · bytes / pixels`` alone can come back
    one byte short after floating-point rounding, for sizes of megabytes).
    """
    if args.size is not None:
        return {"target_bpp": 8 * (args.size + 0.5) / (width * height)}
    if args.bpp is not None:
        return {"target_bpp": args.bpp}
    return {"quality": args.quality}


def rate_target(args: argparse.Namespace) -> str | None:
    """The rate target as the user gave it, for the report (None: a quality, no rate control)."""
    if args.size is not None:
        return f"<= {args.size} bytes"
    if args.bpp is not None:
        return f"<= {args.bpp:g} bpp"
    return None


def compress_image(pipe, image, args: argparse.Namespace) -> dict:
    """One image -> ``.rdc`` bytes at the asked quality or rate, or the reason no quality meets the rate target.

    Returns ``{"data", "quality", "width", "height"}``, the quality read back from the file's header, or
    ``{"error", "width", "height"}`` with the [`RateTargetError`] message (it names the smallest size).
    """
    from .bitstream.rdc import decode_file

    record = {"width": image.width, "height": image.height}
    try:
        data = pipe.compress(image, seed=args.seed, num_inference_steps=args.steps, strength=args.strength,
                             max_pixels=args.max_pixels, encoder_steps=args.encoder_steps,
                             **rate_options(args, image.width, image.height))
    except RateTargetError as err:
        return record | {"error": str(err)}
    except ValueError as err:
        if isinstance(err, RDCError):  # a bad image: main reports it as such
            raise
        raise CLIError(str(err)) from err  # an option the model cannot honour (--steps above its timesteps)
    return record | {"data": data, "quality": decode_file(data).header.quality}


def report_line(output: Path, record: dict, target: str | None) -> str:
    """``OUT: N bytes, B bpp (WxH), quality Q`` (+ the rate target): what was written, as the header says."""
    size, pixels = record["bytes"], record["width"] * record["height"]
    line = (f"{output}: {size} bytes, {8 * size / pixels:.4f} bpp ({record['width']}x{record['height']}), "
            f"quality {record['quality']:g}")
    return line if target is None else f"{line} (rate control: {target})"


def run_compress(args: argparse.Namespace) -> None:
    from .media.image_io import open_image

    if args.base is not None:
        return run_compress_base(args)
    if args.input.is_dir():
        return run_compress_folder(args)
    args.output = output_file(args, ".rdc")
    if not args.input.is_file():
        raise CLIError(f"{args.input}: no such file")
    image = open_image(args.input)
    pipe = load_pipeline(args.model)
    record = compress_image(pipe, image, args)
    if "error" in record:
        raise RateTargetError(f"{args.input}: {record['error']}; nothing written")
    data = record.pop("data")
    write_atomically(args.output, lambda p: p.write_bytes(data))
    print(report_line(args.output, record | {"bytes": len(data)}, rate_target(args)))


def run_compress_base(args: argparse.Namespace) -> None:
    """``rdc compress --base``: a standard JPEG / WebP / AVIF file, at Pillow's quality or a rate target."""
    from .media.image_io import open_image
    from .media.standard_codecs import SUFFIXES

    if args.input.is_dir():
        raise CLIError("--base codes one image at a time, not a folder")
    if args.steps is not None or args.strength is not None or args.seed != 0:
        raise CLIError("--base writes a standard file, which stores no refinement settings: leave out --steps, "
                       "--strength and --seed (rdc refine takes them)")
    if args.encoder_steps:
        raise CLIError("--encoder-steps optimises the latent of an .rdc file; a --base file has none")
    if args.quality is not None and args.quality != int(args.quality):
        raise CLIError(f"--quality {args.quality:g}: {args.base}'s quality is an integer 0..100")
    args.output = output_file(args, SUFFIXES[args.base])
    if not args.input.is_file():
        raise CLIError(f"{args.input}: no such file")
    image = open_image(args.input)
    pipe = load_pipeline(args.model, "refiner")
    options = rate_options(args, image.width, image.height)
    if options.get("quality") is not None:
        options["quality"] = int(options["quality"])
    try:
        data = pipe.compress(image, format=args.base, max_pixels=args.max_pixels, **options)
    except RateTargetError as err:
        raise RateTargetError(f"{args.input}: {err}; nothing written") from err
    write_atomically(args.output, lambda p: p.write_bytes(data))
    target = rate_target(args)
    print(f"{args.output}: {len(data)} bytes, {8 * len(data) / (image.width * image.height):.4f} bpp "
          f"({image.width}x{image.height}), {args.base}" + (f" (rate control: {target})" if target else ""))


def run_refine(args: argparse.Namespace) -> None:
    """``rdc refine``: a JPEG / WebP / AVIF file (or a folder of them) refined; nothing is loaded before every file is
    known to be one."""
    from .limits import check_decode_size
    from .media.standard_codecs import probe

    if args.fast and args.strength is not None:
        raise CLIError("--fast is the plain decode: leave out --strength (or use --strength 0)")

    def decode(pipe, data: bytes):
        return pipe.decompress(data, refine=not args.fast, num_inference_steps=args.steps, strength=args.strength,
                               seed=args.seed, max_pixels=args.max_pixels).images[0]

    def describe(pipe, base: str, data: bytes) -> str:
        steps = pipe.config.default_num_inference_steps if args.steps is None else args.steps
        strength = pipe.config.default_strength if args.strength is None else args.strength
        if args.fast or steps == 0 or strength == 0:
            how = "plain decode"
        elif pipe.not_refined(data, *probe(data)):  # the pipeline's warning said why
            how = "plain decode: refining would not improve this file"
        else:
            how = (f"refined, {plural(steps, 'step')} of {type(pipe.scheduler).__name__}, strength {strength:g}, "
                   f"seed {args.seed}")
        return f"{how} ({base} file)"

    if args.input.is_dir():
        paths = sorted(p for p in args.input.iterdir() if p.suffix.lower() in REFINE_SUFFIXES and p.is_file())
        if not paths:
            raise CLIError(f"{args.input}: no {', '.join(REFINE_SUFFIXES)} files in this folder")
        return decode_folder(args, paths, probe, "refiner", decode, describe)
    args.output = output_file(args, ".png")
    fmt = _format_for(args.output)
    data = read_bytes(args.input)
    base, width, height = probe(data)
    check_decode_size(width, height, args.max_pixels)
    pipe = load_pipeline(args.model, "refiner")
    use_scheduler(pipe, args.scheduler)
    check_steps_option(pipe, args.steps)
    image = decode(pipe, data)
    save_image(image, args.output, fmt)
    print(f"{args.output}: {image.width}x{image.height} {image.mode}, {describe(pipe, base, data)}")


REFINE_SUFFIXES = (".jpg", ".jpeg", ".webp", ".avif")
"""What ``rdc refine FOLDER`` takes from the folder (each file is still checked to be what its name says)."""


def _list_images(folder: Path, limit: int | None = None) -> list[Path]:
    from .training import list_images

    if not folder.is_dir():
        raise CLIError(f"{folder}: no such folder")
    try:
        return list_images(folder)[:limit]
    except FileNotFoundError as err:
        raise CLIError(str(err)) from err


def run_compress_folder(args: argparse.Namespace) -> None:
    """Every image of a folder -> ``OUTDIR/<stem>.rdc``; each process of ``accelerate launch`` takes a share.

    With a rate target every image gets its own search; an image that cannot meet it is reported and skipped
    (nothing written for it), the others are written, and the command fails at the end.
    """
    from .media.image_io import open_image
    from .parallel import map_shards, state

    paths = _list_images(args.input)
    output_folder(args, paths, ".rdc", "two images share a name stem, their .rdc files would collide")
    args.output.mkdir(exist_ok=True)
    current = state()
    pipe = load_pipeline(args.model).to(current.device)
    # Every process checks for existing outputs above; none may write before all have checked,
    # or a fast process's new files would look like old ones to a slow one.
    current.wait_for_everyone()

    pipe.set_progress_bar_config(disable=True)  # one bar over the files instead

    def work(share: list[Path]) -> list[dict]:
        done = []
        for path in files_progress(share, current):
            record = compress_image(pipe, open_image(path), args) | {"input": path}
            if "data" in record:
                data = record.pop("data")
                write_atomically(args.output / f"{path.stem}.rdc", lambda p, data=data: p.write_bytes(data))
                record["bytes"] = len(data)
            done.append(record)
        return done

    done = map_shards(work, paths)
    if not current.is_main_process:
        return
    target = rate_target(args)
    written = [r for r in done if "error" not in r]
    for record in done:
        if "error" in record:
            print(f"rdc compress: error: {record['input']}: {record['error']}; nothing written", file=sys.stderr)
        else:
            print(report_line(args.output / f"{record['input'].stem}.rdc", record, target))
    total_bytes = sum(r["bytes"] for r in written)
    total_pixels = sum(r["width"] * r["height"] for r in written)
    overall = f", {8 * total_bytes / total_pixels:.4f} bpp over all pixels" if written else ""
    print(f"{plural(len(written), 'file')}, {total_bytes} bytes{overall} "
          f"({plural(current.num_processes, 'process', 'processes')})")
    if len(written) < len(done):
        raise RateTargetError(f"{len(done) - len(written)} of {plural(len(done), 'image')} cannot meet the rate target "
                              f"({target}); nothing written for them")


def run_eval(args: argparse.Namespace) -> None:

    from .evaluation.results import csv_path, machine_info, save_results, summarize
    from .evaluation.scoring import decode_name, evaluate_pipeline
    from .parallel import map_shards, state

    if args.fast and (args.steps or args.scheduler):
        raise CLIError("--fast decodes without refinement: leave out --steps and --scheduler")
    for path in (args.output, csv_path(args.output)):
        check_output(path, args.force)
    paths = _list_images(args.folder, args.limit)
    current = state()
    pipe = load_pipeline(args.model).to(current.device)
    pipe.set_progress_bar_config(disable=True)
    use_scheduler(pipe, args.scheduler)
    steps = 0 if args.fast else (pipe.config.default_num_inference_steps if args.steps is None else args.steps)
    name = decode_name(type(pipe.scheduler).__name__, steps)
    decodes = {name: {"refine": False} if steps == 0 else {"num_inference_steps": steps}}

    def work(share: list[Path]) -> list[dict]:
        return evaluate_pipeline(pipe, share, decodes=decodes, quality=args.qualities, seed=args.seed,
                                 fid=not args.no_fid, progress=current.is_main_process)

    records = map_shards(work, paths)
    if not current.is_main_process:
        return
    summary = summarize(records, fid=not args.no_fid)
    info = machine_info(str(current.device)) | {
        "model": pipe.model_name, "model_arg": str(args.model), "data": str(args.folder), "images": len(paths),
        "qualities": args.qualities or [pipe.config.default_quality], "processes": current.num_processes}
    json_file, csv_file = save_results(args.output, records, summary, info)
    for key, entry in summary.items():
        fid = "n/a" if entry.get("fid") is None or entry["fid"] != entry["fid"] else f"{entry['fid']:.2f}"
        kid = "n/a" if entry.get("kid") is None or entry["kid"] != entry["kid"] else f"{entry['kid']:.4f}"
        print(f"{key}: {entry['count']} images, {entry['bpp']:.4f} bpp, PSNR {entry['psnr']:.2f} dB, "
              f"MS-SSIM {entry['ms_ssim']:.4f}, LPIPS {entry['lpips']:.4f}, FID {fid} / KID {kid} "
              f"({entry.get('patches', 0)} patches), median encode {entry['median_encode_s']:.3f} s, "
              f"decode {entry['median_decode_s']:.3f} s")
    print(f"wrote {json_file} and {csv_file}")


def run_bdrate(args: argparse.Namespace) -> None:
    from .evaluation.bdrate import bd_rate_table
    from .evaluation.results import load_results

    rows = bd_rate_table([load_results(path) for path in args.results])
    if not rows:
        raise CLIError("no pair of curves to compare (it takes two curves with at least two rates each)")
    print("BD-rate of test vs anchor, % (negative: fewer bits for the same quality; LPIPS as -LPIPS)")
    for row in rows:
        print(f"{row['test']} vs {row['anchor']}: PSNR {row['bdrate_psnr']:+.2f} %, "
              f"LPIPS {row['bdrate_lpips']:+.2f} % ({row['test_points']} vs {row['anchor_points']} points)")


def run_plot(args: argparse.Namespace) -> None:
    from .evaluation.plotting import plot_files, plot_rd
    from .evaluation.results import load_results

    results = [load_results(path) for path in args.results]
    if args.output.exists() and not args.output.is_dir():
        raise CLIError(f"{args.output} is not a folder")
    if not args.output.parent.exists():
        raise CLIError(f"folder {args.output.parent} does not exist")
    existing = [path for path in plot_files(args.output) if path.exists()]
    if existing and not args.force:
        raise CLIError(f"{existing[0]} already exists (use --force to overwrite)")
    args.output.mkdir(exist_ok=True)
    for path in plot_rd(results, args.output):
        print(path)


def run_decompress(args: argparse.Namespace) -> None:
    from .bitstream.rdc import decode_file
    from .limits import check_decode_size

    if args.fast and args.strength is not None:
        raise CLIError("--fast decodes without refinement: leave out --strength (or use --strength 0)")
    if args.input.is_dir():
        return run_decompress_folder(args)
    args.output = output_file(args, ".png")
    fmt = _format_for(args.output)
    data = read_bytes(args.input)
    header = decode_file(data).header  # a broken file (or a bomb) fails before a model is loaded
    check_decode_size(header.width, header.height, args.max_pixels)
    pipe = load_pipeline(args.model)
    use_scheduler(pipe, args.scheduler)
    check_steps_option(pipe, args.steps)
    out = pipe.decompress(data, refine=not args.fast, num_inference_steps=args.steps, strength=args.strength,
                          max_pixels=args.max_pixels)
    image = out.images[0]
    save_image(image, args.output, fmt)
    print(f"{args.output}: {image.width}x{image.height} {image.mode}, {decode_how(args, pipe, header)}")


def decode_how(args: argparse.Namespace, pipe, header) -> str:
    """``fast``, or ``refined, N steps of SCHEDULER, strength S``: how a file was decoded, for the report."""
    steps = header.num_inference_steps if args.steps is None else args.steps
    strength = header.strength if args.strength is None else args.strength
    if args.fast or steps == 0 or strength == 0:
        return "fast"
    return f"refined, {plural(steps, 'step')} of {type(pipe.scheduler).__name__}, strength {strength:g}"


def check_steps_option(pipe, steps: int | None) -> None:
    """``--steps`` above what the scheduler was trained with fails inside diffusers, after the work: say it first."""
    from .limits import check_steps

    if steps is not None:
        try:
            check_steps(steps, pipe.scheduler.config.num_train_timesteps)
        except ValueError as err:
            raise CLIError(f"--steps {steps}: {err}") from err


def run_decompress_folder(args: argparse.Namespace) -> None:
    """Every ``.rdc`` file of a folder -> ``OUTDIR/<stem>.png``, as ``rdc compress DIR -o OUTDIR`` wrote them."""
    from .bitstream.rdc import decode_file

    def read(data: bytes) -> tuple[object, int, int]:
        header = decode_file(data).header
        return header, header.width, header.height

    def decode(pipe, data: bytes):
        return pipe.decompress(data, refine=not args.fast, num_inference_steps=args.steps, strength=args.strength,
                               max_pixels=args.max_pixels).images[0]

    paths = sorted(p for p in args.input.iterdir() if p.suffix.lower() == ".rdc" and p.is_file())
    if not paths:
        raise CLIError(f"{args.input}: no .rdc files in this folder")
    decode_folder(args, paths, read, "image", decode, lambda pipe, header, data: decode_how(args, pipe, header))


def decode_folder(args: argparse.Namespace, paths: list[Path], read: Callable, kind: str, decode: Callable,
                  describe: Callable) -> None:
    """Each of ``paths`` decoded by ``decode(pipe, bytes)`` into ``OUTDIR/<stem>.png``; each process of ``accelerate
    launch`` takes a share. Every file is read first (``read(bytes) -> (header, width, height)``: a broken file or a
    bomb fails before the ``kind`` model is loaded); each output is reported with ``describe(pipe, header, bytes)``."""
    from .limits import check_decode_size
    from .parallel import map_shards, state

    targets = output_folder(args, paths, ".png", "two files share a name stem (a.rdc, a.RDC), their PNGs would collide")
    headers = {}
    for path in paths:
        try:
            headers[path], width, height = read(read_bytes(path))
        except RDCError as err:
            raise type(err)(f"{path}: {err}") from err
        check_decode_size(width, height, args.max_pixels, what=str(path))
    args.output.mkdir(exist_ok=True)
    current = state()
    pipe = load_pipeline(args.model, kind).to(current.device)
    pipe.set_progress_bar_config(disable=True)  # one bar over the files instead
    use_scheduler(pipe, args.scheduler)
    check_steps_option(pipe, args.steps)
    current.wait_for_everyone()  # every process checked the outputs before any writes one

    def work(share: list[tuple[Path, Path]]) -> list[dict]:
        done = []
        for path, target in files_progress(share, current):
            data = read_bytes(path)
            image = decode(pipe, data)
            save_image(image, target, "PNG")
            done.append({"output": target, "size": f"{image.width}x{image.height} {image.mode}",
                         "how": describe(pipe, headers[path], data)})
        return done

    done = map_shards(work, list(zip(paths, targets, strict=True)))
    if not current.is_main_process:
        return
    for record in done:
        print(f"{record['output']}: {record['size']}, {record['how']}")
    print(f"{plural(len(done), 'file')} ({plural(current.num_processes, 'process', 'processes')})")


def save_image(image, path: Path, fmt: str) -> None:
    """Write a decoded image atomically, with its ICC profile (Pillow's JPEG and WebP writers embed one only when
    given it). A refined transparent file cannot become a JPEG: that is said, not dropped."""
    if image.mode in ("RGBA", "LA") and fmt == "JPEG":
        raise CLIError(f"{path}: the image is transparent and JPEG cannot hold transparency: write .png or .webp")
    write_atomically(path, lambda p: image.save(p, format=fmt, icc_profile=image.info.get("icc_profile")))


def _format_for(path: Path) -> str:
    from PIL import Image

    Image.init()
    fmt = Image.EXTENSION.get(path.suffix.lower())
    if fmt is None:
        raise CLIError(f"unknown image extension {path.suffix!r} for {path} (use .png for lossless output)")
    return fmt


def run_compress_video(args: argparse.Namespace) -> None:
    from .bitstream.rdcv import decode_video_file
    from .media.video_io import open_video

    args.output = output_file(args, ".rdcv")
    if not args.input.exists():
        raise CLIError(f"{args.input}: no such file or folder")
    clip = open_video(args.input, fps=args.fps, max_frames=args.max_frames)  # frames are read as they are coded
    pipe = load_pipeline(args.model, "video")  # a bar per frame, on a terminal
    try:
        data = pipe.compress(clip.frames, fps=clip.fps, gop_size=args.gop, quality=args.quality, seed=args.seed,
                             max_pixels=args.max_pixels,
                             num_inference_steps=args.steps)
    except ValueError as err:
        if isinstance(err, RDCError):  # a bad clip: main reports it as such
            raise
        raise CLIError(str(err)) from err  # an option the model cannot honour (another quality)
    write_atomically(args.output, lambda p: p.write_bytes(data))
    file = decode_video_file(data)
    width, height, count = file.header.width, file.header.height, len(file.frame_types)
    print(f"{args.output}: {plural(count, 'frame')} of {width}x{height} at {float(clip.fps):g} fps, "
          f"{len(data)} bytes, {8 * len(data) / (width * height * count):.4f} bpp (GOP {args.gop}, "
          f"quality {pipe.quality:g})")


def run_decompress_video(args: argparse.Namespace) -> None:
    from .bitstream.rdcv import decode_video_file
    from .limits import check_decode_size
    from .media.video_io import check_video_target, save_frames, write_video

    args.output = output_file(args, ".mp4")
    if args.frames_dir is not None and args.frames_dir.exists() and any(args.frames_dir.iterdir()) and not args.force:
        raise CLIError(f"{args.frames_dir} is not empty (use --force to overwrite)")
    data = read_bytes(args.input)
    file = decode_video_file(data)  # a broken file (or a bomb) fails before a model is loaded
    header, count = file.header, len(file.frame_types)
    check_decode_size(header.width, header.height, args.max_pixels, what="the clip (per frame)")
    check_video_target(args.output, header.width, header.height)  # and an unwritable output before decoding
    pipe = load_pipeline(args.model, "video")  # a bar per frame, on a terminal
    use_scheduler(pipe, args.scheduler)
    check_steps_option(pipe, args.steps)
    # One frame at a time from the decoder into the video (and the PNG folder): memory stays flat in the length.
    frames = pipe.decode_frames(data, refine=not args.fast, num_inference_steps=args.steps,
                                max_pixels=args.max_pixels, temporal_noise=args.temporal_noise)
    if args.frames_dir is not None:
        frames = save_frames(args.frames_dir, frames, count=count, force=args.force)
    write_video(args.output, frames, header.fps, force=args.force)
    steps = header.num_inference_steps if args.steps is None else args.steps
    how = "fast" if args.fast or steps == 0 else (f"refined, {plural(steps, 'step')} of "
                                                   f"{type(pipe.scheduler).__name__}, {args.temporal_noise} noise")
    print(f"{args.output}: {plural(count, 'frame')} of {header.width}x{header.height} at {float(header.fps):g} fps, "
          f"{how}")


def run_info(args: argparse.Namespace) -> None:
    from .bitstream import RDCVFile, sniff

    data = read_bytes(args.input)
    file = sniff(data)
    h = file.header
    if isinstance(file, RDCVFile):
        count = len(file.frame_types)
        print(f"file:        {args.input} ({len(data)} bytes, {8 * len(data) / (h.width * h.height * count):.4f} bpp)")
        print(f"clip:        {plural(count, 'frame')} of {h.width}x{h.height} at {float(h.fps):g} fps ({h.fps}), "
              f"GOP {h.gop_size}")
        print(f"frames:      {''.join(file.frame_types)}")
        print(f"model:       {h.model_name} (ids {h.codec_id.hex()} / {h.inter_codec_id.hex()})")
        print(f"refinement:  seed {h.seed}, {plural(h.num_inference_steps, 'step')} by default")
        return
    print(f"file:        {args.input} ({len(data)} bytes, {8 * len(data) / (h.width * h.height):.4f} bpp)")
    colour = f"ICC profile of {len(file.icc_profile)} bytes" if file.icc_profile else "sRGB (no ICC profile)"
    print(f"image:       {h.width}x{h.height}, original mode {h.mode}, {colour}")
    print(f"quality:     {h.quality:g}")
    print(f"model:       {h.model_name} (id {h.model_id.hex()})")
    print(f"refinement:  seed {h.seed}, {plural(h.num_inference_steps, 'step')}, strength {h.strength:g} by default")
    print(f"sections:    {', '.join(str(len(s)) for s in file.sections)} bytes")


def run_demo(args: argparse.Namespace) -> None:
    if importlib.util.find_spec("gradio") is None:
        raise CLIError('the demo needs Gradio: pip install "rdc-diffusers[demo]" '
                       '(from a clone: pip install -e ".[demo]")')
    from .demo import launch_demo

    launch_demo(port=args.port, share=args.share == "yes", host=args.host, models=args.model)


class OneLineWarnings:
    """A ``warnings.showwarning`` that prints ``rdc COMMAND: warning: MESSAGE``, one line like the errors (Python's
    own adds the file, line number and source line: noise for someone running a command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __call__(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
        text = str(message).strip().splitlines()
        print(f"rdc {self.command}: warning: {text[0] if text else category.__name__}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("info", "bdrate", "plot"):  # they load no model: skip diffusers' import (seconds)
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # component loading; the sampling bar stays
    run = {"compress": run_compress, "decompress": run_decompress, "info": run_info, "demo": run_demo,
           "eval": run_eval, "bdrate": run_bdrate, "plot": run_plot, "compress-video": run_compress_video,
           "decompress-video": run_decompress_video, "refine": run_refine}[args.command]
    import warnings

    from .parallel import finish

    try:
        with warnings.catch_warnings():  # restores Python's own printer afterwards (main runs inside tests too)
            warnings.showwarning = OneLineWarnings(args.command)
            run(args)
    except (RDCError, CLIError, OSError, ImportError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"rdc {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(err, CLIError) else 1
    finally:
        finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
