"""Fast start (issue 16): what `import rdc_diffusers`, `rdc --help`, `rdc --version` and `rdc info` import.

Timing depends on the machine (benchmarks/startup.py measures it); these tests check the cause instead: which heavy
packages end up in ``sys.modules`` of a fresh process. torch alone takes seconds to import, compressai pulls in
torch_geometric and transformers, so none of them may load for commands that only parse arguments or a header.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PYTHON, python_env, random_image

import rdc_diffusers
from rdc_diffusers.cli import main

HEAVY = ("torch", "diffusers", "compressai", "torch_geometric", "transformers", "numpy", "PIL")

PROBE = """
import json, sys
if sys.argv[1] == "-c":
    exec(sys.argv[2])
else:
    from rdc_diffusers.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps([m for m in HEAVY if m in sys.modules]))
""".replace("HEAVY", repr(HEAVY))


def heavy_imports(*argv: str) -> list[str]:
    """The HEAVY packages a fresh process holds after ``-c CODE`` or after ``rdc ARGV...`` (run through main)."""
    done = subprocess.run([PYTHON, "-c", PROBE, *argv], capture_output=True, text=True, env=python_env(),
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_rdc_diffusers_loads_no_heavy_package():
    assert heavy_imports("-c", "import rdc_diffusers; rdc_diffusers.__version__; rdc_diffusers.RDCError") == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["info", "--help"]])
def test_rdc_help_and_version_load_no_heavy_package(argv):
    assert heavy_imports(*argv) == []


def test_rdc_info_loads_no_heavy_package(tiny_pipeline, tmp_path):
    path = tmp_path / "a.rdc"
    path.write_bytes(tiny_pipeline.compress(random_image(16, 16)))
    assert heavy_imports("info", str(path)) == []


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"rdc-diffusers {rdc_diffusers.__version__}\n"


def test_every_public_name_and_submodule_resolves():
    namespace: dict = {}
    exec("from rdc_diffusers import *", namespace)
    assert set(rdc_diffusers.__all__) <= set(namespace)
    for name in rdc_diffusers.__all__:
        assert getattr(rdc_diffusers, name).__name__ == name
    assert set(rdc_diffusers.__all__) <= set(dir(rdc_diffusers))
    assert rdc_diffusers.models.codec.RDCCodec is rdc_diffusers.RDCCodec  # submodules, as eager imports gave
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        rdc_diffusers.NoSuchThing  # noqa: B018


DIFFUSERS_API = """
import sys
import rdc_diffusers  # the documented way (docs/hub.md): registers RDCPipeline with diffusers, lazily now
import diffusers

assert "rdc_diffusers.pipelines" not in sys.modules, "import diffusers must stay as light as it is"
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained(sys.argv[1])
print(type(pipe).__module__, type(pipe).__name__)
assert diffusers.RDCVideoPipeline is rdc_diffusers.RDCVideoPipeline
"""


def test_diffusion_pipeline_finds_rdc_pipeline_after_lazy_import(tiny_model_dir):
    """rdc_diffusers first, diffusers after: an import hook makes diffusers resolve the classes on first lookup."""
    done = subprocess.run([PYTHON, "-c", DIFFUSERS_API, str(tiny_model_dir)], capture_output=True, text=True,
                          env=python_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["rdc_diffusers.pipelines.pipeline_rdc", "RDCPipeline"]
