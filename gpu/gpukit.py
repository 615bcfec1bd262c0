"""What the GPU kit's three scripts share: where things live, the size limits of the trip, and the weight files.

Standard library only at import time: ``run.py`` imports this before it has installed anything.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "gpu"
CARRY = KIT / "carry"
"""Everything that travels besides the repository: wheels/, train/, val/, lpips/ and manifest.json (git-ignored)."""
BUNDLED = REPO / "src" / "rdc_diffusers" / "bundled" / "rdc-bsds"

MIB = 1 << 20
TRAVEL_LIMIT = 64 * MIB
"""The repository's tracked and untracked-not-ignored files plus the carried folders, all together."""
PART_LIMIT = 15 * MIB
"""Each file that comes back must stay under 16 MiB: weights larger than this return in parts."""

WEIGHTS = "diffusion_pytorch_model.safetensors"
COMPONENT = {"codec": "codec", "residual": "unet"}
"""The pipeline component each stage trains (and the folder it comes back in)."""

GPU_MACHINE = ("torch", "torchvision", "accelerate", "safetensors", "huggingface_hub", "numpy", "pillow", "scipy",
               "pandas", "torch-geometric", "python-dateutil", "xxhash", "requests", "urllib3", "charset-normalizer",
               "certifi", "idna", "einops")
"""What the GPU machine's python3 has that the training path imports (with whatever these require), from the package
list of its image ('cuda', nvidia-h200) in the device tool's KINDS.md, read there on 2026-11-17: no diffusers,
compressai, pytorch_msssim or lpips, and no network. compressai's package ``__init__`` imports its point-cloud
datasets and transforms, and with them scipy, pandas (-> python-dateutil) and torch_geometric (-> xxhash): the image
has them, so they need not travel (their wheels are 47 MB, which put the kit over a trip's 64 MiB until session 31).
``run.py``'s import check names any that is missing there, before training."""

# What the training path imports beyond GPU_MACHINE, carried as real wheels: distribution name -> version, None = the
# version installed here (the one the tests ran with). Measured by importing the training path with nothing else
# on the path (tests/test_gpu_kit.py). diffusers needs nothing more at import; matplotlib, which compressai
# declares, is not imported.
WHEELS = {"diffusers": None, "compressai": "1.2.8", "pytorch-msssim": None}
RESIDUAL_WHEELS = {"lpips": None}
PINNED = {"diffusers", "compressai", "lpips"}
"""Installed from the carried wheel even when the machine has another version: the versions tested here."""


def normalise(name: str) -> str:
    """A distribution name in the form wheel file names use (``pytorch-msssim`` -> ``pytorch_msssim``)."""
    return name.replace("-", "_").replace(".", "_").lower()


def wheel_name(path: Path) -> tuple[str, str]:
    """``(normalised distribution name, version)`` from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return normalise(name), version


def travelling_files(repo: Path = REPO) -> dict[str, int]:
    """What the device tool sends without any carry: the tracked and untracked-not-ignored files that exist
    (``git ls-files -co --exclude-standard``), name -> bytes."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True).stdout
    files = {}
    for name in sorted({n for n in out.decode().split("\0") if n}):
        path = repo / name
        if path.is_symlink() or path.is_file():
            files[name] = path.lstat().st_size
    return files


def travelling_tree_bytes(repo: Path = REPO) -> int:
    return sum(travelling_files(repo).values())


def weights_dtype(path: Path) -> str:
    """The floating-point type of a safetensors file's tensors (``float32``, ``float16``, ``mixed``): its header."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    kinds = {v["dtype"] for k, v in header.items() if k != "__metadata__" and v["dtype"].startswith(("F", "BF"))}
    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
    return names.get(next(iter(kinds)), "?") if len(kinds) == 1 else ("mixed" if kinds else "no floats")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB ({size / MIB:.1f} MiB)"


def split_weights(weights: Path, into: Path, limit: int = PART_LIMIT) -> list[Path]:
    """Write ``weights`` (a safetensors file) into ``into`` as files of at most ``limit`` bytes.

    One file keeps the standard name (the folder loads as it is); more are ``…-0000i-of-0000n.safetensors``, each a
    complete safetensors file holding some of the tensors (float32 kept: nothing is rounded on the way back).
    """
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    into.mkdir(parents=True, exist_ok=True)
    if weights.stat().st_size <= limit:
        shutil.copyfile(weights, into / WEIGHTS)
        return [into / WEIGHTS]
    with safe_open(str(weights), "pt") as f:
        metadata = f.metadata() or {"format": "pt"}
    state = load_file(str(weights))
    groups, room = [[]], limit - MIB  # 1 MiB left for each part's header
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > limit - MIB:
            raise ValueError(f"{key} alone is {nbytes} bytes: more than a returned file may hold")
        if nbytes > room:
            groups.append([])
            room = limit - MIB
        groups[-1].append(key)
        room -= nbytes
    stem = WEIGHTS.removesuffix(".safetensors")
    paths = []
    for i, keys in enumerate(groups, 1):
        paths.append(into / f"{stem}-{i:05d}-of-{len(groups):05d}.safetensors")
        save_file({k: state[k] for k in keys}, str(paths[-1]), metadata=metadata)
    return paths


def merge_weights(folder: Path, into: Path) -> Path:
    """A model folder whose weights came back in parts, as a standard one: config + one safetensors file."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    into.mkdir(parents=True, exist_ok=True)
    parts = sorted(folder.glob(WEIGHTS.removesuffix(".safetensors") + "-*-of-*.safetensors"))
    for name in os.listdir(folder):
        if name.endswith(".json"):
            shutil.copyfile(folder / name, into / name)
    if not parts:
        if not (folder / WEIGHTS).exists():
            raise FileNotFoundError(f"no {WEIGHTS} (nor parts of it) in {folder}")
        if (folder / WEIGHTS).resolve() != (into / WEIGHTS).resolve():
            shutil.copyfile(folder / WEIGHTS, into / WEIGHTS)
        return into
    expected = int(parts[0].name.rsplit("-of-", 1)[1].split(".")[0])
    if len(parts) != expected:
        raise FileNotFoundError(f"{folder}: {len(parts)} of {expected} weight parts")
    state, metadata = {}, {"format": "pt"}
    for part in parts:
        with safe_open(str(part), "pt") as f:
            metadata = f.metadata() or metadata
            for key in f.keys():
                if key in state:
                    raise ValueError(f"{key} is in two weight parts of {folder}")
                state[key] = f.get_tensor(key)
    save_file(state, str(into / WEIGHTS), metadata=metadata)
    return into


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.exists() else default


def requirement_closure(roots) -> set[str]:
    """Normalised names of ``roots`` and of every distribution they require (no extras), as installed here."""
    import importlib.metadata

    from packaging.requirements import Requirement

    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if normalise(name) in seen:
            continue
        seen.add(normalise(name))
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def machine_like(into: Path, carried) -> Path:
    """A folder that makes this Python see only what the GPU machine would after the kit's installation: links to
    the installed files of ``GPU_MACHINE`` (with what they require) and of the ``carried`` distributions.

    Run ``python -S`` with ``PYTHONPATH=into:src``: site-packages is then off the path, and an import outside these
    distributions fails as it would there (this Python's versions, not the GPU machine's: a check of the wheel list).
    """
    import importlib.metadata

    wanted = requirement_closure(GPU_MACHINE) | {normalise(d) for d in carried}
    into.mkdir(parents=True, exist_ok=True)
    for dist in importlib.metadata.distributions():
        if normalise(dist.metadata["Name"]) not in wanted:
            continue
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if top != "__pycache__" and not top.endswith(".pth") and not (into / top).exists():
                (into / top).symlink_to(Path(dist.locate_file(top)))
    return into
