"""Average the weights of runs trained side by side from the same start (a uniform "model soup", Wortsman et
al. 2022): two one-thread runs on a 2-core CPU give one model instead of a pick between two.

    python examples/average_weights.py runs/refiner_a/pipeline runs/refiner_b/pipeline --output runs/soup/pipeline

The runs are refiners (``train_rdc.py refiner``) or image pipelines (``train_rdc.py residual``). Every
floating-point tensor of the codec and the UNet that differs between the runs is their mean; a tensor equal in
every run (the image codec the residual stage keeps frozen) is kept exactly, so the files it wrote still decode;
integer buffers must agree. Only runs fine-tuned from the same weights average well: their configs must match,
and the result is measured like any other candidate (``benchmarks/refiner.py``, ``benchmarks/run.py``) before it
ships.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from rdc_diffusers import RDCPipeline, RDCRefinerPipeline

COMPONENTS = ("codec", "unet")


def architecture(model: torch.nn.Module) -> dict:
    """A component's config without the entries that say where it was loaded from (``_name_or_path``)."""
    return {key: value for key, value in model.config.items() if not key.startswith("_")}


def load(path: Path) -> RDCPipeline | RDCRefinerPipeline:
    """A run's saved pipeline, as the class its ``model_index.json`` names (diffusers resolves it)."""
    pipe = DiffusionPipeline.from_pretrained(path)
    if not isinstance(pipe, RDCPipeline | RDCRefinerPipeline):
        raise SystemExit(f"{path} holds a {type(pipe).__name__}: give image pipelines or refiners")
    return pipe


def average(pipelines: list[RDCPipeline | RDCRefinerPipeline]) -> RDCPipeline | RDCRefinerPipeline:
    """The first pipeline, its components' weights replaced by the mean over ``pipelines``."""
    first = pipelines[0]
    if any(type(pipe) is not type(first) for pipe in pipelines):
        raise SystemExit("the runs are pipelines of different classes")
    for name in COMPONENTS:
        models = [getattr(pipe, name) for pipe in pipelines]
        if any(architecture(m) != architecture(models[0]) for m in models):
            raise SystemExit(f"the runs' {name} configs differ: only runs of one architecture can be averaged")
        states = [m.state_dict() for m in models]
        mean = {}
        for key, value in states[0].items():
            if all(torch.equal(s[key], value) for s in states):
                mean[key] = value
            elif value.is_floating_point():
                mean[key] = torch.stack([s[key] for s in states]).mean(0)
            else:
                raise SystemExit(f"{name}.{key} differs between the runs and cannot be averaged")
        models[0].load_state_dict(mean)
    return first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipelines", type=Path, nargs="+", help="the runs' saved pipelines (RUN/pipeline)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the averaged pipeline")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    args = parser.parse_args(argv)
    if len(args.pipelines) < 2:
        parser.error("give at least two pipelines to average")
    if args.output.exists() and not args.force:
        raise SystemExit(f"{args.output} exists; pass --force to overwrite it")
    average([load(p) for p in args.pipelines]).save_pretrained(args.output)


if __name__ == "__main__":
    main()
