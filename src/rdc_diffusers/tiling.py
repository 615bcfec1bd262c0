"""Run a per-pixel network over overlapping tiles so its memory is bounded by the tile, not the image.

Every activation of the synthesis transform and of the UNet is a float32 map at (a fraction of) the image size,
128 channels and more: a 12 MP photo needs several GB per layer. Tiled, only one tile's activations live at a
time; the outputs are written into one image-sized buffer and blended across the overlaps with linear ramps
(as diffusers' tiled VAE decoding does). The outer half of each overlap is dropped, so where a network's reach
is shorter than that the tiles agree up to float rounding (the codec's transforms); the blend hides what they
still disagree on (GroupNorm's statistics are per tile in the UNet).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

__all__ = ["AUTO_TILE_PIXELS", "OVERLAP", "TILE_SIZE", "choose_tile_size", "tile_spans", "tiled"]


def tile_spans(size: int, tile: int, overlap: int, align: int) -> list[tuple[int, int, int, int]]:
    """Cover ``0..size`` with tiles: ``(start, stop, keep_start, keep_stop)`` per tile, all multiples of ``align``.

    ``start..stop`` is what the network sees (the kept part plus up to ``overlap`` on each side that has a
    neighbour); ``keep_start..keep_stop`` partitions ``0..size``. A ``size`` that fits in one tile gives one span.
    """
    if tile % align or overlap % align or size % align:
        raise ValueError(f"tile {tile}, overlap {overlap} and size {size} must be multiples of {align}")
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    spans, keep_start = [], 0
    while keep_start < size:
        keep_stop = min(keep_start + tile, size)
        spans.append((max(keep_start - overlap, 0), min(keep_stop + overlap, size), keep_start, keep_stop))
        keep_start = keep_stop
    return spans


def _ramp(length: int, lead: int, trail: int, device) -> Tensor:
    """Weights along one axis of a tile seen over ``length`` pixels, ``lead`` of them before its kept part and
    ``trail`` after: 0 over the outer half of each overlap (where the crop's own border reaches the output),
    then a linear ramp across the border over the inner half on each side, so neighbours' weights sum to 1."""
    w = torch.ones(length, device=device)
    if lead:
        w[: lead // 2] = 0
        w[lead // 2 : lead // 2 + lead] = (torch.arange(lead, device=device) + 0.5) / lead
    if trail:
        w[length - trail // 2 :] = 0
        w[length - trail // 2 - trail : length - trail // 2] = (torch.arange(trail, 0, -1, device=device) - 0.5) / trail
    return w


def tiled(fn: Callable[..., Tensor], inputs: list[Tensor], *, scales: list[int], out_scale: int, tile: int,
          overlap: int, align: int, progress: Callable[[Iterable], Iterable] | None = None) -> Tensor:
    """``fn(*inputs)`` computed tile by tile, for a ``fn`` that maps spatially aligned inputs to one output map.

    Args:
        fn: the network; called on crops of ``inputs`` of the same region.
        inputs: ``[B, C, H_i, W_i]`` tensors covering the same area at different resolutions.
        scales: for each input, how many output pixels one of its pixels covers (1 at the output's resolution,
            16 for a latent at 1/16 of it).
        out_scale: the output's pixels per pixel of the grid the tiles are laid on (must divide ``align``).
        tile, overlap, align: in output pixels; each tile sees ``overlap`` more on each side, drops the outer
            half and blends the inner half with its neighbour, so ``overlap / 2`` should exceed the receptive
            field's reach and ``tile`` be at least ``overlap``.
        progress: wraps the iteration over the tiles (a pipeline's ``progress_bar``), when there are several.
    """
    first, scale0 = inputs[0], scales[0]
    height, width = first.shape[-2] * scale0, first.shape[-1] * scale0
    rows, cols = tile_spans(height, tile, overlap, align), tile_spans(width, tile, overlap, align)
    if len(rows) == len(cols) == 1:
        return fn(*inputs)
    out = weight = None
    spans = [(row, col) for row in rows for col in cols]
    for (top, bottom, keep_top, keep_bottom), (left, right, keep_left, keep_right) in (progress or iter)(spans):
        crops = [x[..., top // s : bottom // s, left // s : right // s]
                 for x, s in zip(inputs, scales, strict=True)]
        y = fn(*crops)
        if out is None:
            out = torch.zeros(*y.shape[:2], height // out_scale, width // out_scale, dtype=y.dtype, device=y.device)
            weight = torch.zeros(height // out_scale, width // out_scale, dtype=y.dtype, device=y.device)
        w = torch.outer(
            _ramp(bottom - top, min(keep_top - top, overlap), min(bottom - keep_bottom, overlap), y.device),
            _ramp(right - left, min(keep_left - left, overlap), min(right - keep_right, overlap), y.device),
        )[:: out_scale, :: out_scale].to(y.dtype)
        region = (slice(None), slice(None), slice(top // out_scale, bottom // out_scale),
                  slice(left // out_scale, right // out_scale))
        out[region] += y * w
        weight[region[2:]] += w
        del crops, y
        release_freed_memory()
    return out.div_(weight)


def release_freed_memory() -> None:
    """Give the pages of freed tensors back to the OS (glibc's ``malloc_trim``; nothing elsewhere).

    A tile's activations are freed before the next tile's are allocated, but glibc serves the middle-sized ones
    (below its adaptive mmap threshold, up to 32 MB) from a heap that fragments and keeps their pages: over the 40
    tiles of a 4K refined decode the resident size crept from 1.6 to 2.3 GB. Trimming after each tile keeps it at
    what one tile needs (1.8 GiB peak, benchmarks/results/memory); a trim costs milliseconds, a tile seconds.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # musl has none
    except OSError:
        return None


_LIBC = _load_libc()

TILE_SIZE = 512
"""The tile (pixels) used when tiling is automatic. Each tile is seen at 768² (with the overlap), where the UNet's
activations take ~0.5 GB; at 1024 (seen at 1280²) they took ~1.4 GB, and a 4K refined decode peaked at 2.8 GB of
RSS (benchmarks/results/memory). The overlap costs (768/512)² = 2.25x the work of the kept area, against 1.56x."""
AUTO_TILE_PIXELS = 2048 * 2048
"""Images above this many pixels (after padding) are tiled unless a call says otherwise."""
OVERLAP = 128
"""Pixels each tile sees beyond its own part on each side (the outer half dropped, the inner half blended)."""


def choose_tile_size(tile_size: int | None, height: int, width: int, align: int) -> int | None:
    """The tile to use for a ``height`` x ``width`` image: ``None`` means untiled.

    ``tile_size`` None: automatic (:data:`TILE_SIZE` above :data:`AUTO_TILE_PIXELS`); 0: never tile; otherwise a
    positive multiple of ``align``.
    """
    if tile_size is None:
        return TILE_SIZE if height * width > AUTO_TILE_PIXELS else None
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 0 or tile_size % align:
        raise ValueError(f"tile_size must be a positive multiple of {align} pixels, 0 (never tile) or None "
                         f"(automatic above {AUTO_TILE_PIXELS:,} pixels), got {tile_size!r}")
    return tile_size or None
