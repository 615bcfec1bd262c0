"""Speed and memory of encoding and decoding one image: per scheduler and step count, codec-only, encode.

Each configuration runs in its **own Python process** (``python -m rdc_diffusers.evaluation.speed --child ...``),
because peak memory is a per-process high-water mark: measured in one long process, every configuration after the
largest would report the largest one's peak. In that child:

* time: one untimed warm-up run, then ``repeats`` timed runs (``time.perf_counter``, with
  ``torch.cuda.synchronize`` on a GPU); the median is reported, with the minimum and maximum;
* ``peak_rss_mib``: the process's peak resident memory at the end (Linux ``VmHWM``; ``ru_maxrss`` elsewhere):
  Python, torch, the model, the image and the run's activations, i.e. what a user's process needs;
* ``load_rss_mib``: the same high-water mark right after loading the model and the image, before any run, so
  ``peak_rss_mib - load_rss_mib`` is what the configuration itself added;
* on CUDA, ``peak_cuda_mib``: ``torch.cuda.max_memory_allocated`` over the timed runs.

Configurations: ``("encode", None, 0)``, ``("decode", None, 0)`` (codec only: the fast decode) and
``("decode", scheduler, steps)`` for every scheduler (``ddpm``, ``ddim``, ``dpm``) and step count. The image is
coded at one quality (default: the model's ``default_quality``), recorded in each row: the rate changes the
entropy coder's work a little, the transforms and the UNet not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..schedulers import use_scheduler
from ..text import plural

STEPS = (1, 2, 4, 8, 16, 50)
TABLE_SCHEDULERS = ("ddpm", "ddim", "dpm")  # the speed table's samplers, by the short names `rdc --scheduler` takes

__all__ = ["TABLE_SCHEDULERS", "STEPS", "measure", "speed_configs", "speed_table"]


def speed_configs(schedulers: Sequence[str] = TABLE_SCHEDULERS, steps: Sequence[int] = STEPS) -> list[dict]:
    """The configurations of a speed table, in the order they are measured."""
    configs = [{"operation": "encode", "scheduler": None, "steps": 0},
               {"operation": "decode", "scheduler": None, "steps": 0}]
    configs += [{"operation": "decode", "scheduler": s, "steps": n} for s in schedulers for n in steps]
    return configs


def _peak_rss_mib() -> float:
    """This process's peak resident memory. Linux: ``VmHWM`` of ``/proc/self/status``, which starts afresh at
    ``exec``; ``ru_maxrss`` survives ``exec`` (getrusage(2)), so a child of a large parent would report the
    parent's peak. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure(model: str, image: str | Path, operation: str, scheduler: str | None = None, steps: int = 0,
            repeats: int = 3, device: str = "cpu", threads: int | None = None, seed: int = 0,
            quality: float | None = None) -> dict:
    """Measure one configuration in this process (see the module doc; :func:`speed_table` isolates each one)."""
    import torch

    from ..media.image_io import open_image
    from ..pipelines.pipeline_rdc import RDCPipeline

    if operation not in ("encode", "decode"):
        raise ValueError(f"operation must be 'encode' or 'decode', got {operation!r}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if threads is not None:
        torch.set_num_threads(threads)
    pipe = RDCPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    use_scheduler(pipe, scheduler)
    picture = open_image(image)
    quality = pipe.config.default_quality if quality is None else quality
    data = pipe.compress(picture, quality=quality, seed=seed)
    cuda = torch.device(device).type == "cuda"

    def run() -> None:
        if operation == "encode":
            pipe.compress(picture, quality=quality, seed=seed)
        else:
            pipe.decompress(data, refine=steps > 0, num_inference_steps=steps or None, output_type="pt")
        if cuda:
            torch.cuda.synchronize()

    load_rss = _peak_rss_mib()
    run()  # warm-up: first-call allocations and kernel selection are not what a user waits for each time
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    result = {
        "operation": operation, "scheduler": type(pipe.scheduler).__name__ if steps else None, "steps": steps,
        "quality": quality, "bytes": len(data),
        "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats,
        "load_rss_mib": load_rss, "peak_rss_mib": _peak_rss_mib(),
        "width": picture.width, "height": picture.height, "device": device, "torch_threads": torch.get_num_threads(),
    }
    if cuda:
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def speed_table(model: str, image: str | Path, *, schedulers: Sequence[str] = TABLE_SCHEDULERS,
                steps: Sequence[int] = STEPS, repeats: int = 3, device: str = "cpu", threads: int | None = None,
                quality: float | None = None, log=None) -> list[dict]:
    """Measure every configuration of :func:`speed_configs`, each in a fresh child process; one row each."""
    rows = []
    for config in speed_configs(schedulers, steps):
        request = {"model": str(model), "image": str(image), "repeats": repeats, "device": device,
                   "threads": threads, "quality": quality, **config}
        done = subprocess.run([sys.executable, "-m", "rdc_diffusers.evaluation.speed", "--child", json.dumps(request)],
                              capture_output=True, text=True, env=dict(os.environ))
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["no output"]
            raise RuntimeError(f"speed child for {config} failed: {lines[-1]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if log is not None:
            row = rows[-1]
            steps = plural(row['steps'], 'step')
            log(f"speed {row['operation']} {row['scheduler'] or 'codec'} {steps}: "
                f"{row['median_s']:.3f} s, peak RSS {row['peak_rss_mib']:.0f} MiB")
    return rows


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one speed measurement (used by speed_table)")
    parser.add_argument("--child", required=True, help="JSON keyword arguments of measure()")
    request = json.loads(parser.parse_args(argv).child)
    print(json.dumps(measure(**request)))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
