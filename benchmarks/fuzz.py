"""Fuzz the ``.rdc`` and ``.rdcv`` decoders: every mutated file must end in a typed error or a decoded image,
within a time and memory limit per case.

    python benchmarks/fuzz.py [--cases 100000] [--jobs 2] [--model rdc-bsds] [--max-pixels 65536]
        [--time-limit 10] [--memory-limit-gb 2] [--seed 0] [--out benchmarks/results/fuzz]

Seed files are real: crops of ``examples/images/kodim23.png`` coded by the model at qualities 0, 50 and 100, and
a 3-frame clip coded by its video pipeline. Each case takes one seed and one mutation:

* ``bit_flip``: 1-8 random bits flipped anywhere (the CRC is left as it was);
* ``truncate``: cut at a random length; ``insert``: 1-16 random bytes inserted at a random position;
* ``forge_byte``: one byte of the body (any header field, section length or payload byte) set to 0, 255, ±1
  or a random value, **CRC recomputed**, so the decoder's checks past the CRC are what is tested;
* ``forge_field``: a big-endian u16 or u32 written at a random header offset (0, 1, the maximum or random:
  sizes, lengths, counts, quality, strength), CRC recomputed;
* ``forge_payload``: 1-32 random payload bytes replaced, CRC recomputed (the entropy decoder sees garbage).

Outcomes: ``typed`` (an ``RDCError``: what a caller can catch), ``decoded``, ``other`` (any other exception: a
bug), ``over_time`` / ``over_memory`` (a case past ``--time-limit`` CPU seconds, or raising the worker's peak RSS by
more than ``--memory-limit-gb``), ``crashed`` (the worker process died). Decoding is fast (``refine=False``) for
nine cases in ten and refined (1 step) for the tenth; ``--max-pixels`` is the decoders' pixel limit, as a server
would set it (files claiming more are ``typed``: ``DecompressionBombError``). The report also times the refusal of
a bomb (a valid 65535×65535 header). Writes ``fuzz.json`` and ``fuzz.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import statistics
import struct
import sys
import time
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTATIONS = ("bit_flip", "truncate", "insert", "forge_byte", "forge_field", "forge_payload")
OUTCOMES = ("typed", "decoded", "other", "over_time", "over_memory", "crashed")
_worker: dict = {}


class CaseTimeout(BaseException):
    """Raised by the alarm inside a worker; a BaseException so that no ``except Exception`` in the code under
    test can swallow it."""


def seed_files(model: str) -> dict[str, bytes]:
    """Real files to mutate: three image crops at three qualities and one short clip."""
    from PIL import Image

    from rdc_diffusers import RDCPipeline, RDCVideoPipeline

    pipe = RDCPipeline.from_pretrained(model)
    image = Image.open(ROOT / "examples/images/kodim23.png").convert("RGB")
    seeds = {}
    for (width, height), quality in zip([(64, 64), (96, 64), (128, 96)], [0, 50, 100], strict=True):
        seeds[f"rdc_{width}x{height}_q{quality}"] = pipe.compress(image.crop((256, 128, 256 + width, 128 + height)),
                                                                 quality=quality, num_inference_steps=1)
    video = RDCVideoPipeline.from_pretrained(model)
    frames = [image.crop((256 + 2 * k, 128, 320 + 2 * k, 192)) for k in range(3)]
    seeds["rdcv_64x64_3f"] = video.compress(frames, gop_size=2, num_inference_steps=1)
    return seeds


def payload_start(data: bytes) -> int:
    """Where the sections begin (the header is everything before)."""
    from rdc_diffusers.bitstream.rdc import decode_file
    from rdc_diffusers.bitstream.rdcv import VIDEO_MAGIC, decode_video_file

    if data.startswith(VIDEO_MAGIC):
        sections = [s for frame in decode_video_file(data).sections for s in frame]
    else:
        sections = list(decode_file(data).sections)
    return len(data) - 4 - sum(map(len, sections))


def reseal(body: bytearray) -> bytes:
    return bytes(body) + struct.pack(">I", zlib.crc32(body))


def mutate(data: bytes, header_end: int, kind: str, rng: random.Random) -> bytes:
    """One mutated copy of ``data`` (see the module docstring)."""
    if kind == "bit_flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "truncate":
        return data[: rng.randrange(len(data))]
    if kind == "insert":
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]
    body = bytearray(data[:-4])
    if kind == "forge_byte":
        at = rng.randrange(len(body))
        body[at] = rng.choice([0, 255, (body[at] + 1) % 256, (body[at] - 1) % 256, rng.randrange(256)])
    elif kind == "forge_field":
        fmt = rng.choice([">H", ">I"])
        size = struct.calcsize(fmt)
        at = rng.randrange(4, max(header_end - size, 5))  # past the magic, inside the header
        top = 2 ** (8 * size) - 1
        if at + size <= len(body):
            struct.pack_into(fmt, body, at, rng.choice([0, 1, top, rng.randrange(top + 1)]))
    else:  # forge_payload
        if len(body) > header_end:
            for _ in range(rng.randint(1, 32)):
                body[rng.randrange(header_end, len(body))] = rng.randrange(256)
    return reseal(body)


def _alarm(signum, frame):
    raise CaseTimeout


def init_worker(model: str, max_pixels: int) -> None:
    import torch

    from rdc_diffusers import RDCPipeline, RDCVideoPipeline

    torch.set_num_threads(1)
    image, video = RDCPipeline.from_pretrained(model), RDCVideoPipeline.from_pretrained(model)
    for pipe in (image, video):
        pipe.set_progress_bar_config(disable=True)
    _worker.update(image=image, video=video, max_pixels=max_pixels)
    signal.signal(signal.SIGPROF, _alarm)


def run_case(data: bytes, refine: bool) -> tuple[str, str]:
    """``(outcome, detail)`` of decoding ``data`` once in this worker (no time/memory judgement)."""
    from rdc_diffusers import RDCError
    from rdc_diffusers.bitstream.rdcv import VIDEO_MAGIC

    pipe = _worker["video" if data.startswith(VIDEO_MAGIC) else "image"]
    try:
        pipe.decompress(data, refine=refine, num_inference_steps=1, max_pixels=_worker["max_pixels"])
        return "decoded", ""
    except RDCError as err:
        return "typed", type(err).__name__
    except Exception as err:  # the bugs this fuzzer looks for
        return "other", f"{type(err).__name__}: {str(err)[:200]}"


def run_batch(cases: list[tuple[str, str, bytes, bool]], time_limit: float, memory_limit_gb: float) -> list[dict]:
    """Decode each case with an alarm at ``time_limit`` seconds of this worker's CPU time (what a case costs a
    server, whatever else shares the machine) and the worker's peak-RSS growth checked after it."""
    results = []
    for seed, kind, data, refine in cases:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.process_time()
        signal.setitimer(signal.ITIMER_PROF, time_limit)
        try:
            outcome, detail = run_case(data, refine)
        except CaseTimeout:
            outcome, detail = "over_time", "alarm"
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        seconds = time.process_time() - start
        grown_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024**2
        if outcome != "over_time" and seconds > time_limit:
            outcome, detail = "over_time", f"{seconds:.1f} s"
        if grown_gb > memory_limit_gb:
            outcome, detail = "over_memory", f"+{grown_gb:.2f} GB"
        results.append({"seed": seed, "kind": kind, "outcome": outcome, "detail": detail, "seconds": seconds,
                        "bytes": len(data)})
    return results


def bomb_refusal(model: str, seed: bytes, repeats: int = 20) -> dict:
    """Time and memory to refuse a valid header claiming 65535×65535, in this process."""
    from rdc_diffusers import DecompressionBombError, RDCPipeline

    pipe = RDCPipeline.from_pretrained(model)
    body = bytearray(seed[:-4])
    struct.pack_into(">HH", body, 6, 65535, 65535)
    bomb = reseal(body)
    times, before = [], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            pipe.decompress(bomb)
        except DecompressionBombError:
            times.append(time.perf_counter() - start)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"refused": len(times), "of": repeats, "median_ms": 1000 * statistics.median(times) if times else None,
            "max_ms": 1000 * max(times) if times else None, "peak_rss_growth_mb": grown}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    parser.add_argument("--batch", type=int, default=500, help="cases per task sent to a worker")
    parser.add_argument("--model", default="rdc-bsds")
    parser.add_argument("--max-pixels", type=int, default=2**16,
                        help="the decoders' pixel limit (256²: every accepted file decodes within the time limit)")
    parser.add_argument("--time-limit", type=float, default=10.0, help="CPU seconds per case")
    parser.add_argument("--memory-limit-gb", type=float, default=2.0, help="peak RSS growth per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fuzz"))
    args = parser.parse_args(argv)

    seeds = seed_files(args.model)
    header_ends = {name: payload_start(data) for name, data in seeds.items()}
    rng = random.Random(args.seed)
    cases = []
    for i in range(args.cases):
        name = rng.choice(sorted(seeds))
        kind = MUTATIONS[i % len(MUTATIONS)]
        cases.append((name, kind, mutate(seeds[name], header_ends[name], kind, rng), rng.random() < 0.1))
    start = time.time()
    results, pending = [], [cases[i : i + args.batch] for i in range(0, len(cases), args.batch)]
    while pending:  # a crashed worker breaks the pool: count its batch as crashed and go on with a new pool
        with ProcessPoolExecutor(args.jobs, initializer=init_worker, initargs=(args.model, args.max_pixels)) as pool:
            futures = [(batch, pool.submit(run_batch, batch, args.time_limit, args.memory_limit_gb))
                       for batch in pending]
            pending = []
            for batch, future in futures:
                try:
                    results += future.result()
                except BrokenProcessPool:
                    pending.append(batch)
            if pending:  # the first broken batch is charged with the crash, the others run again
                crashed, pending = pending[0], pending[1:]
                results += [{"seed": s, "kind": k, "outcome": "crashed", "detail": "worker died", "seconds": None,
                             "bytes": len(d)} for s, k, d, _ in crashed]
        print(f"{len(results)} / {len(cases)} cases", file=sys.stderr, flush=True)
    minutes = (time.time() - start) / 60

    counts = Counter(r["outcome"] for r in results)
    by_kind = {kind: Counter(r["outcome"] for r in results if r["kind"] == kind) for kind in MUTATIONS}
    by_seed = {name: Counter(r["outcome"] for r in results if r["seed"] == name) for name in sorted(seeds)}
    seconds = [r["seconds"] for r in results if r["seconds"] is not None]
    report = {
        "info": {"cases": len(results), "model": args.model, "max_pixels": args.max_pixels,
                 "time_limit_s": args.time_limit, "memory_limit_gb": args.memory_limit_gb, "seed": args.seed,
                 "jobs": args.jobs, "minutes": minutes, "seed_files": {k: len(v) for k, v in seeds.items()},
                 "command": " ".join(["python", *sys.argv])},
        "outcomes": {o: counts.get(o, 0) for o in OUTCOMES},
        "by_mutation": {k: {o: c.get(o, 0) for o in OUTCOMES} for k, c in by_kind.items()},
        "by_seed": {k: {o: c.get(o, 0) for o in OUTCOMES} for k, c in by_seed.items()},
        "seconds_per_case": {"median": statistics.median(seconds), "max": max(seconds)} if seconds else {},
        "bomb": bomb_refusal(args.model, seeds[sorted(n for n in seeds if n.startswith("rdc_"))[0]]),
        "failures": [r for r in results if r["outcome"] not in ("typed", "decoded")][:50],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fuzz.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "fuzz.md").write_text(markdown(report))
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    info, bomb = report["info"], report["bomb"]
    lines = [f"# Fuzzing the decoders: {info['cases']:,} cases", "",
             f"Model `{info['model']}`, pixel limit {info['max_pixels']:,}, {info['time_limit_s']:g} CPU s and "
             f"{info['memory_limit_gb']:g} GB per case, {info['jobs']} workers, {info['minutes']:.1f} min; command: "
             f"`{info['command']}`.", "",
             "| mutation | " + " | ".join(OUTCOMES) + " |", "|---|" + "---|" * len(OUTCOMES)]
    for kind, counts in report["by_mutation"].items():
        lines.append(f"| {kind} | " + " | ".join(f"{counts[o]:,}" for o in OUTCOMES) + " |")
    lines.append("| **all** | " + " | ".join(f"**{report['outcomes'][o]:,}**" for o in OUTCOMES) + " |")
    lines += ["", f"CPU seconds per case: median {report['seconds_per_case'].get('median', 0):.4f}, "
                  f"max {report['seconds_per_case'].get('max', 0):.2f}.",
              f"A bomb (valid header claiming 65535×65535) refused {bomb['refused']}/{bomb['of']} times, median "
              f"{bomb['median_ms']:.2f} ms (max {bomb['max_ms']:.2f} ms), peak RSS growth "
              f"{bomb['peak_rss_growth_mb']:.1f} MB.", ""]
    if report["failures"]:
        lines += ["Failures (first 50):", ""] + [f"- {f['seed']} {f['kind']}: {f['outcome']} {f['detail']}"
                                                   for f in report["failures"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
