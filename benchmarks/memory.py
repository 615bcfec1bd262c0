"""Peak memory and time of encoding and decoding large images, tiled (the default above 4.2 MP) and whole, and
of long clips, streamed.

    python benchmarks/memory.py [--model rdc-bsds] [--source ../shared/data/clic_or_div2k_val]
        [--sizes 4K 8K] [--whole 4K] [--clips 32 1000] [--threads 2] [--out benchmarks/results/memory]

The test image of each size is the first photo of ``--source`` resized (Lanczos) to 3840×2160 (4K) or 7680×4320
(8K). Each measurement runs in a fresh process (``python benchmarks/memory.py --child ...``) so its peak resident
set size (``ru_maxrss``, which includes Python, torch and the model: about 0.9 GiB before any image) belongs to
that one operation: ``encode`` (image file -> ``.rdc``), ``fast`` (``.rdc`` -> x_init) and ``refined`` (the default
refined decode). ``--whole`` sizes are also measured with ``tile_size=0`` (what every decode did before tiling).
``--clips``: clips of that many 416×240 frames, the 32 frames of ``--video`` played forwards and backwards (each
pass a little brighter), coded with ``rdc compress-video`` and decoded (refined, default steps) with
``rdc decompress-video``, which stream frames from and to disk. Writes ``memory.json`` and ``memory.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"4K": (3840, 2160), "8K": (7680, 4320)}


def child(args: argparse.Namespace) -> None:
    """One operation in this process; prints ``{"seconds", "peak_rss_gb"}`` as JSON."""
    import torch

    from rdc_diffusers import RDCPipeline
    from rdc_diffusers.media.image_io import open_image

    torch.set_num_threads(args.threads)
    pipe = RDCPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    if args.op.startswith("clip"):
        from rdc_diffusers.cli import main as rdc

        command = ["compress-video", args.image, "-o", args.rdc] if args.op == "clip-encode" else \
            ["decompress-video", args.rdc, "-o", str(Path(args.rdc).with_suffix(".mp4"))]
        rdc([*command, "--model", args.model])
    elif args.op == "encode":
        Path(args.rdc).write_bytes(pipe.compress(open_image(args.image), tile_size=args.tile_size))
    else:
        pipe.decompress(Path(args.rdc).read_bytes(), refine=args.op == "refined", tile_size=args.tile_size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_rss_gb": peak}))


def measure(args: argparse.Namespace, op: str, image: Path, rdc: Path, tile_size: int | None) -> dict:
    command = [sys.executable, __file__, "--child", op, "--model", args.model, "--image", str(image),
               "--rdc", str(rdc), "--threads", str(args.threads)]
    if tile_size is not None:
        command += ["--tile-size", str(tile_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rdc-bsds")
    parser.add_argument("--source", type=Path, default=Path("../shared/data/clic_or_div2k_val"))
    parser.add_argument("--sizes", nargs="*", default=["4K", "8K"], choices=sorted(SIZES))
    parser.add_argument("--whole", nargs="*", default=["4K"], choices=sorted(SIZES),
                        help="sizes also measured untiled (tile_size=0)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory"))
    parser.add_argument("--clips", type=int, nargs="*", default=[32, 1000], help="clip lengths in frames")
    parser.add_argument("--video", type=Path, default=Path("../shared/data/video/BasketballPass_416x240"))
    parser.add_argument("--child", dest="op", choices=["encode", "fast", "refined", "clip-encode", "clip-decode"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--rdc", help=argparse.SUPPRESS)
    parser.add_argument("--tile-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.op:
        return child(args)

    from PIL import Image

    from rdc_diffusers.media.video_io import read_video
    from rdc_diffusers.training import list_images

    source = list_images(args.source)[0]
    rows = []
    info = {"model": args.model, "source": source.name, "threads": args.threads,
            "command": " ".join(["python", *sys.argv])}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            image = Path(tmp) / f"{size}.png"
            Image.open(source).convert("RGB").resize(SIZES[size], Image.LANCZOS).save(image)
            for tiling, tile_size in [("tiled (default)", None)] + ([("whole", 0)] if size in args.whole else []):
                rdc = Path(tmp) / f"{size}-{tile_size}.rdc"
                for op in ("encode", "fast", "refined"):
                    result = measure(args, op, image, rdc, tile_size)
                    rows.append({"size": size, "pixels": SIZES[size][0] * SIZES[size][1], "tiling": tiling,
                                 "op": op, **result})
                    print(json.dumps(rows[-1]), flush=True)
                    write_results(args.out, info, rows)
        clip = read_video(args.video).frames
        for count in args.clips:
            folder = Path(tmp) / f"clip{count}"
            folder.mkdir()
            for i in range(count):
                lap, k = divmod(i, len(clip))
                frame = clip[k if lap % 2 == 0 else len(clip) - 1 - k]
                frame.point(lambda v, lap=lap: min(255, v + lap % 8)).save(folder / f"f{i + 1:04d}.png")
            rdc = Path(tmp) / f"clip{count}.rdcv"
            for op in ("clip-encode", "clip-decode"):
                result = measure(args, op, folder, rdc, None)
                rows.append({"size": f"{count} frames 416x240", "pixels": count * 416 * 240, "tiling": "streamed",
                             "op": op.removeprefix("clip-"), **result})
                print(json.dumps(rows[-1]), flush=True)
                write_results(args.out, info, rows)


def write_results(out: Path, info: dict, rows: list[dict]) -> None:
    """``memory.json`` and ``memory.md`` with the rows so far (rewritten after each measurement)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    lines = [f"# Peak memory of `{info['model']}` on large images and long clips", "",
             f"Image: `{info['source']}` resized; {info['threads']} threads; command: `{info['command']}`. Peak RSS is "
             "the whole process (Python, torch and the model included: about 0.9 GiB before any image).", "",
             "| input | tiling | operation | peak RSS GiB | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['tiling']} | {r['op']} | {r['peak_rss_gb']:.2f} | {r['seconds']:.1f} |"
              for r in rows]
    (out / "memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
