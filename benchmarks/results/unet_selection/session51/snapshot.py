"""A pipeline folder from a running residual run's checkpoint EMA, to gate it before its end (session 51's one-off).

    PYTHONPATH=src python benchmarks/results/unet_selection/session51/snapshot.py runs/unet_s51F runs/snap51F_1200
"""
import sys

import torch

from rdc_diffusers import RDCPipeline

run, out = sys.argv[1:3]
pipe = RDCPipeline.from_pretrained("src/rdc_diffusers/bundled/rdc-bsds")
state = torch.load(f"{run}/checkpoint/custom_checkpoint_0.pkl", weights_only=False)
params = list(pipe.unet.parameters())
with torch.no_grad():
    for p, s in zip(params, state["shadow_params"], strict=True):
        p.copy_(s)
pipe.save_pretrained(out)
print("saved", out, "optimization_step", state.get("optimization_step"))
