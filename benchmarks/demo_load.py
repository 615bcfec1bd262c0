"""The demo under load: concurrent clients sending good images, large ones, non-images and bombs.

    python benchmarks/demo_load.py [--model rdc-bsds] [--clients 4] [--rounds 6] [--timeout 300]
        [--out benchmarks/results/demo_load]

Serves ``rdc demo`` in its own process on 127.0.0.1 (nothing leaves the machine) and runs ``--clients`` threads,
each a ``gradio_client.Client`` sending ``--rounds`` rounds of every request kind:

* ``image``: a 1.2 MP crop of a CLIC photo, compressed and decoded fast (must succeed);
* ``too_many_pixels``: a 6 MP image, above the demo's 4 MP limit; ``not_an_image``: a text file named .png;
* ``png_bomb``: a 1 KB PNG whose header claims 20000×20000 pixels (Pillow's decompression-bomb size);
* ``rdc_bomb``: a valid ``.rdc`` header claiming 65535×65535 pixels; ``corrupt_rdc``: an ``.rdc`` with a byte
  flipped.

Every bad request must come back with the demo's own message (not Gradio's generic error), every good one with
its images, within ``--timeout`` seconds; the server must stay up, answer a last request, and its resident memory
(sampled every 0.2 s, and its kernel-reported peak) is reported. Writes ``demo_load.json`` and ``demo_load.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("image", "too_many_pixels", "not_an_image", "png_bomb", "rdc_bomb", "corrupt_rdc")
OUR_MESSAGES = ("This does not look like an image file", "this demo takes up to", "Cannot decode this file",
                "The file holds a", "Please upload", "more pixels than this demo opens")
"""How the demo's own refusals begin or contain (demo.py); anything else is Gradio's generic error or a bug."""


def png_bomb() -> bytes:
    """A PNG whose IHDR claims 20000×20000 RGB pixels, with one tiny IDAT: Pillow refuses it at open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


def make_inputs(folder: Path, model: str, source: Path) -> dict[str, Path]:
    """One file per request kind."""
    from PIL import Image

    from rdc_diffusers import RDCPipeline

    photo = Image.open(source).convert("RGB")
    photo.crop((0, 0, 1344, 896)).save(folder / "image.png")
    photo.resize((3000, 2000)).save(folder / "large.png")
    (folder / "text.png").write_text("not an image, whatever the name says")
    (folder / "bomb.png").write_bytes(png_bomb())
    data = RDCPipeline.from_pretrained(model).compress(photo.crop((0, 0, 64, 64)))
    body = bytearray(data[:-4])
    struct.pack_into(">HH", body, 6, 65535, 65535)
    (folder / "bomb.rdc").write_bytes(bytes(body) + struct.pack(">I", zlib.crc32(body)))
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0x40
    (folder / "corrupt.rdc").write_bytes(bytes(corrupt))
    return {"image": folder / "image.png", "too_many_pixels": folder / "large.png",
            "not_an_image": folder / "text.png", "png_bomb": folder / "bomb.png", "rdc_bomb": folder / "bomb.rdc",
            "corrupt_rdc": folder / "corrupt.rdc"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def request(client, model: str, kind: str, path: Path, timeout: float) -> dict:
    from gradio_client import handle_file

    start = time.perf_counter()
    if kind in ("rdc_bomb", "corrupt_rdc"):
        job = client.submit(handle_file(str(path)), model, "ddim", -1, -1, "fast", api_name="/decompress")
    else:
        job = client.submit(handle_file(str(path)), model, 50, None, "ddim", 1, 1, 0, "fast", api_name="/compress")
    try:
        result = job.result(timeout=timeout)
        outcome, detail = ("ok", "") if result and result[1] else ("other_error", "no image returned")
    except TimeoutError:
        outcome, detail = "timeout", ""
    except Exception as err:  # gradio_client's AppError carries the server's message
        message = str(err)
        outcome = "our_message" if any(m in message for m in OUR_MESSAGES) else "other_error"
        detail = message[:200]
    return {"kind": kind, "outcome": outcome, "detail": detail, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="rdc-bsds")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per request")
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared/data/clic_or_div2k_val")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/demo_load"))
    args = parser.parse_args(argv)

    from gradio_client import Client

    from rdc_diffusers.training import list_images

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "rdc_diffusers.cli", "demo", "--port", str(port),
                               "--model", args.model], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=os.environ | {"GRADIO_ANALYTICS_ENABLED": "False"})
    samples, stop = [], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            value = rss_mb(server.pid)
            if value is not None:
                samples.append(value)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inputs = make_inputs(Path(tmp), args.model, list_images(args.source)[0])
            deadline = time.time() + 300
            while True:  # the server imports torch and loads the model first
                try:
                    Client(f"http://127.0.0.1:{port}/", verbose=False)
                    break
                except Exception:
                    if server.poll() is not None or time.time() > deadline:
                        raise SystemExit(f"the demo did not start: {server.stderr.read().decode()[-2000:]}") from None
                    time.sleep(1)
            idle_mb = rss_mb(server.pid)

            label = Path(args.model).name  # the demo's dropdown names a model by its last path component

            def client_run(_: int) -> list[dict]:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                return [request(client, label, kind, inputs[kind], args.timeout)
                        for _ in range(args.rounds) for kind in KINDS]

            start = time.time()
            with ThreadPoolExecutor(args.clients) as pool:
                results = [r for batch in pool.map(client_run, range(args.clients)) for r in batch]
            minutes = (time.time() - start) / 60
            alive = server.poll() is None
            last = request(Client(f"http://127.0.0.1:{port}/", verbose=False), label, "image", inputs["image"],
                           args.timeout) if alive else {"outcome": "server down"}
            peak_mb = rss_mb(server.pid, "VmHWM")
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)

    expected = {kind: "ok" if kind == "image" else "our_message" for kind in KINDS}
    by_kind = {kind: Counter(r["outcome"] for r in results if r["kind"] == kind) for kind in KINDS}
    report = {
        "info": {"model": args.model, "clients": args.clients, "rounds": args.rounds, "requests": len(results),
                 "minutes": minutes, "command": " ".join(["python", *sys.argv])},
        "server_alive": alive, "last_request": last["outcome"],
        "by_kind": {k: dict(c) for k, c in by_kind.items()},
        "as_expected": sum(r["outcome"] == expected[r["kind"]] for r in results),
        "idle_rss_mb": idle_mb, "peak_rss_mb": peak_mb, "max_sampled_rss_mb": max(samples) if samples else None,
        "unexpected": [r for r in results if r["outcome"] != expected[r["kind"]]][:20],
        "median_seconds": {k: statistics.median(r["seconds"] for r in results if r["kind"] == k) for k in KINDS},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo_load.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# The demo under load: {len(results)} requests from {args.clients} concurrent clients", "",
             f"Model `{args.model}`, {minutes:.1f} min; command: `{report['info']['command']}`.", "",
             f"Server alive at the end: **{alive}**; a last request: {last['outcome']}. Requests answered as expected "
             f"(images for good uploads, the demo's own message for bad ones): **{report['as_expected']} / "
             f"{len(results)}**. Server memory: {idle_mb:.0f} MB idle, peak {peak_mb:.0f} MB.", "",
             "| request | " + " | ".join(("ok", "our_message", "other_error", "timeout")) + " | median s |",
             "|---|---|---|---|---|---|"]
    for kind in KINDS:
        counts = by_kind[kind]
        lines.append(f"| {kind} | " + " | ".join(str(counts.get(o, 0)) for o in ("ok", "our_message", "other_error",
                                                                                  "timeout"))
                     + f" | {report['median_seconds'][kind]:.2f} |")
    (args.out / "demo_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
