"""The GPU kit's check of a returned result, on this CPU machine before anything is committed:

    python gpu/validate.py RETURNED [--into gpu/results] [--val-dir ../shared/data/bsds_test]

RETURNED is the folder gpu/run.py wrote ($OUT on the GPU machine, as it came back). This script

1. reads its kit.json and train_log.jsonl: the run must have finished, every logged loss must be finite;
2. rebuilds the trained component as a standard model folder, INTO/codec or INTO/unet (weights that came back
   in parts merged into one diffusion_pytorch_model.safetensors, float32), and INTO/pipeline: a copy of the
   bundled pipeline with that component swapped in (what benchmarks/run.py --models and RDCPipeline load);
3. scores it here on the CPU next to the bundled model, with the training script's own validation (the first 4
   images of --val-dir, real bytes): bpp and PSNR at qualities 10/50/90 for a codec, plus the refined decodes'
   PSNR and LPIPS for a UNet;
4. round-trips an image through RDCPipeline.from_pretrained(INTO/pipeline), fast and refined, and decodes the same
   file again with a second, freshly loaded pipeline: the pixels must be identical;
5. writes INTO/validation.json and prints what to run next (the Kodak benchmark, and the copy into the bundle).

Exit status 0 when the result loads, codes and decodes; it does not judge whether the numbers are better.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpukit import BUNDLED, COMPONENT, KIT, REPO, merge_weights, read_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("returned", help="the folder gpu/run.py wrote (as it came back)")
    parser.add_argument("--into", default=str(KIT / "results"), help="where the loadable folders are written")
    parser.add_argument("--reference", default=str(BUNDLED), help="the pipeline compared with, and copied")
    parser.add_argument("--codec", help="residual stage: the codec the UNet was trained on (default: the reference's)")
    parser.add_argument("--val-dir", default=str(REPO.parent / "shared" / "data" / "bsds_test"))
    parser.add_argument("--qualities", type=float, nargs="+", default=[10.0, 50.0, 90.0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1], help="residual stage: refined decodes scored")
    return parser.parse_args(argv)


def training_script():
    """examples/train_rdc.py as a module: its validation functions are the ones the GPU run logged."""
    spec = importlib.util.spec_from_file_location("train_rdc", REPO / "examples" / "train_rdc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_run(returned: Path) -> tuple[str, dict, list[dict]]:
    """The stage, kit.json and the training log of a finished run; stops on a failed run or a non-finite loss."""
    kit = read_json(returned / "kit.json")
    if kit is None:
        raise SystemExit(f"{returned}: no kit.json (not a folder written by gpu/run.py)")
    if not str(kit.get("status", "")).startswith("done"):
        raise SystemExit(f"{returned}: the run did not finish: {kit.get('status')} (see run.log there)")
    log_path = returned / "train_log.jsonl"
    log = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    bad = [r for r in log for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise SystemExit(f"{returned}: non-finite values in train_log.jsonl, first at step {bad[0]['step']}")
    return kit["stage"], kit, log


def assemble(returned: Path, stage: str, into: Path, reference: Path, codec: Path | None) -> Path:
    """INTO/<component> (one weight file) and INTO/pipeline (the reference pipeline with it swapped in)."""
    component = COMPONENT[stage]
    merge_weights(returned / component, into / component)
    pipeline = into / "pipeline"
    shutil.rmtree(pipeline, ignore_errors=True)
    shutil.copytree(reference, pipeline, ignore=shutil.ignore_patterns("__pycache__"))
    swaps = {component: into / component} | ({"codec": codec} if codec else {})
    for name, source in swaps.items():
        shutil.rmtree(pipeline / name)
        shutil.copytree(source, pipeline / name)
    return pipeline


def score(stage: str, pipeline: Path, reference: Path, args, script) -> dict:
    """The training script's validation of the new and the reference pipeline, on this CPU."""
    import torch

    from rdc_diffusers import RDCPipeline

    torch.manual_seed(0)
    images = script.validation_images(args.val_dir)
    scores = {}
    for name, folder in (("reference", reference), ("new", pipeline)):
        pipe = RDCPipeline.from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        if stage == "codec":
            scores[name] = script.validate_codec(pipe.codec, images, tuple(args.qualities))
        else:
            scores[name] = script.validate_residual(pipe, images, tuple(args.steps), tuple(args.qualities))
    return scores


def round_trip(pipeline: Path, image_path: Path, quality: float) -> dict:
    """Compress with one loaded pipeline, decode fast and refined with it and with a second fresh one."""
    import numpy as np
    from PIL import Image

    from rdc_diffusers import RDCPipeline

    image = Image.open(image_path).convert("RGB")
    pipes = [RDCPipeline.from_pretrained(pipeline) for _ in range(2)]
    for pipe in pipes:
        pipe.set_progress_bar_config(disable=True)
    data = pipes[0].compress(image, quality=quality)
    result = {"image": image_path.name, "quality": quality, "bpp": 8 * len(data) / (image.width * image.height)}
    original = np.asarray(image, dtype=np.float64)
    for refine in (False, True):
        first, second = (np.asarray(p.decompress(data, refine=refine).images[0]) for p in pipes)
        if not np.array_equal(first, second):
            raise SystemExit(f"{pipeline}: two loads of the model decode the same file differently (refine={refine})")
        mse = np.mean((original - first.astype(np.float64)) ** 2)
        result[f"psnr_{'refined' if refine else 'fast'}"] = 10 * math.log10(255**2 / mse)
    return result


def table(scores: dict) -> list[str]:
    keys = sorted(k for k in scores["new"] if k.startswith("val_"))
    lines = [f"{'':<28} {'reference':>10} {'new':>10} {'change':>10}"]
    for key in keys:
        ref, new = scores["reference"][key], scores["new"][key]
        lines.append(f"{key:<28} {ref:>10.4f} {new:>10.4f} {new - ref:>+10.4f}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
    returned, into, reference = Path(args.returned), Path(args.into), Path(args.reference)
    stage, kit, log = check_run(returned)
    gpu = (kit.get("environment") or {}).get("gpu") or "CPU"
    print(f"[validate] {stage} run on {gpu}: {kit.get('steps')} iterations, {kit['status']}")
    if kit.get("last_validation"):
        print(f"[validate] its last validation there: {json.dumps(kit['last_validation'])}")
    pipeline = assemble(returned, stage, into, reference, Path(args.codec) if args.codec else None)
    script = training_script()
    scores = score(stage, pipeline, reference, args, script)
    print(f"\n[validate] on this CPU, first 4 images of {args.val_dir} (real bytes):")
    print("\n".join(table(scores)))
    image = sorted(p for p in Path(args.val_dir).iterdir() if p.suffix.lower() in {".jpg", ".png"})[0]
    trip = round_trip(pipeline, image, args.qualities[len(args.qualities) // 2])
    print(f"\n[validate] round trip through RDCPipeline.from_pretrained({pipeline}): {json.dumps(trip)}")
    report = {"returned": str(returned.resolve()), "stage": stage, "run": {k: kit.get(k) for k in
              ("status", "steps", "environment", "last_validation", "seconds", "train_args")},
              "scores": scores, "round_trip": trip, "seconds": round(time.time() - start, 1)}
    (into / "validation.json").write_text(json.dumps(report, indent=2, default=str))
    for name in ("train_log.jsonl", "kit.json"):
        if (returned / name).exists():
            shutil.copyfile(returned / name, into / f"{stage}_{name}")
    component = COMPONENT[stage]
    print(f"""
[validate] loadable: {into / component} and {pipeline}; report: {into / 'validation.json'}
Next, on Kodak (writes only into {into / 'benchmark'}):
  python benchmarks/run.py --models {reference.name if reference == BUNDLED else reference} {pipeline} \\
      --out {into / 'benchmark'} --no-speed --no-baseline [--limit 6]
To adopt it (then commit the weights with the training log {into / (stage + '_train_log.jsonl')}):
  cp {into / component}/config.json {into / component}/diffusion_pytorch_model.safetensors {BUNDLED / component}/""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
