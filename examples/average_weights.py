"""Average the weights of refiners trained side by side from the same start (a uniform "model soup", Wortsman et
al. 2022): two one-thread runs on a 2-core CPU give one model instead of a pick between two.

    python examples/average_weights.py runs/refiner_a/pipeline runs/refiner_b/pipeline --output runs/soup/pipeline

Every floating-point tensor of the analysis transform and the UNet is the mean of the runs'; integer buffers must
agree. Only runs fine-tuned from the same weights average well: their configs must match, and the result is
measured like any other candidate (``benchmarks/refiner.py``) before it ships.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rdc_diffusers import RDCRefinerPipeline

COMPONENTS = ("codec", "unet")


def architecture(model: torch.nn.Module) -> dict:
    """A component's config without the entries that say where it was loaded from (``_name_or_path``)."""
    return {key: value for key, value in model.config.items() if not key.startswith("_")}


def average(pipelines: list[RDCRefinerPipeline]) -> RDCRefinerPipeline:
    """The first pipeline, its components' weights replaced by the mean over ``pipelines``."""
    first = pipelines[0]
    for name in COMPONENTS:
        models = [getattr(pipe, name) for pipe in pipelines]
        if any(architecture(m) != architecture(models[0]) for m in models):
            raise SystemExit(f"the runs' {name} configs differ: only runs of one architecture can be averaged")
        states = [m.state_dict() for m in models]
        mean = {}
        for key, value in states[0].items():
            if value.is_floating_point():
                mean[key] = torch.stack([s[key] for s in states]).mean(0)
            elif all(torch.equal(s[key], value) for s in states):
                mean[key] = value
            else:
                raise SystemExit(f"{name}.{key} differs between the runs and cannot be averaged")
        models[0].load_state_dict(mean)
    return first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipelines", type=Path, nargs="+", help="the runs' saved refiner pipelines (RUN/pipeline)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the averaged pipeline")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    args = parser.parse_args(argv)
    if len(args.pipelines) < 2:
        parser.error("give at least two pipelines to average")
    if args.output.exists() and not args.force:
        raise SystemExit(f"{args.output} exists; pass --force to overwrite it")
    average([RDCRefinerPipeline.from_pretrained(p) for p in args.pipelines]).save_pretrained(args.output)


if __name__ == "__main__":
    main()
