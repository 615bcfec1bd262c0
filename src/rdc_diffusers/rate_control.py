"""Rate control: the highest quality whose file fits a byte budget, found in a handful of encodes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import RateTargetError

__all__ = ["RateSearch", "byte_budget", "search_quality"]


def byte_budget(target_bpp: float, width: int, height: int) -> int:
    """The most bytes a file of ``width`` x ``height`` pixels may have at ``target_bpp`` (bits per pixel, whole
    file); ``ValueError`` unless ``target_bpp`` is a positive number."""
    if isinstance(target_bpp, bool) or not isinstance(target_bpp, (int, float)) or not target_bpp > 0:
        raise ValueError(f"target_bpp must be a positive number, got {target_bpp!r}")
    return math.floor(target_bpp * width * height / 8 + 1e-9)


@dataclass(frozen=True)
class RateSearch:
    """The outcome of :func:`search_quality`: the chosen quality, its file and how many encodes it took."""

    quality: float
    data: bytes
    encodes: int


def search_quality(
    encode: Callable[[float], bytes],
    max_bytes: int,
    *,
    lowest: float = 0.0,
    highest: float = 100.0,
    start: float = 50.0,
    tolerance: float = 0.03,
    max_encodes: int = 8,
    step: float = 0.01,
) -> RateSearch:
    """The highest quality in ``[lowest, highest]`` (on a grid of ``step``) whose file has at most ``max_bytes``.

    File sizes grow roughly exponentially with a learned codec's quality, so each new probe is the
    secant of log(size) through the tightest bracket so far, or, before the budget is bracketed, through the
    two nearest probes on one side of it (the first step uses the slope from ``lowest`` to ``highest``
    measured on the bundled model, about ×12 in size), kept inside the bracket. It stops as soon as a
    fitting file is within ``tolerance`` of the budget and a higher quality was seen not to fit (a close fit
    with nothing above it probed is checked against ``highest`` once), after ``max_encodes`` encodes (the
    last one at ``lowest`` while nothing fits), or when the bracket is one ``step`` wide; the result never
    exceeds the budget.

    Raises:
        RateTargetError: even ``lowest`` gives a file above ``max_bytes`` (the message names the smallest size).
    """
    if max_bytes < 1:
        raise RateTargetError(f"the target must be at least one byte, got {max_bytes}")
    sizes: dict[float, int] = {}
    best: tuple[float, bytes] | None = None  # the highest fitting quality so far
    fit_q, over_q = None, None  # bracket: highest fitting, lowest too big

    def probe(quality: float) -> None:
        nonlocal best, fit_q, over_q
        data = encode(quality)
        sizes[quality] = len(data)
        if len(data) <= max_bytes:
            if best is None or quality > best[0]:
                best = (quality, data)
            fit_q = quality if fit_q is None else max(fit_q, quality)
        else:
            over_q = quality if over_q is None else min(over_q, quality)

    def close() -> bool:
        return best is not None and len(best[1]) >= (1 - tolerance) * max_bytes

    def done() -> bool:
        if fit_q == highest:
            return True
        if close() and over_q is not None:  # close to the budget, and a higher quality was seen not to fit
            return True
        return fit_q is not None and over_q is not None and over_q - fit_q <= step + 1e-9

    slope = math.log(12.0) / (highest - lowest)  # log-size per quality unit, until measured
    quality = start
    while True:
        probe(quality)
        if done() or len(sizes) >= max_encodes:
            break
        if fit_q is None and lowest in sizes:  # even the lowest quality is too big
            break
        if fit_q is not None and over_q is not None:
            lo, hi = fit_q, over_q
            slope = max((math.log(sizes[hi]) - math.log(sizes[lo])) / (hi - lo), 1e-6)
            guess = lo + (math.log(max_bytes * (1 - tolerance / 2)) - math.log(sizes[lo])) / slope
            margin = 0.1 * (hi - lo)  # keep the probe strictly inside the bracket
            guess = min(max(guess, lo + margin), hi - margin)
        else:
            known = fit_q if fit_q is not None else over_q
            same_side = [q for q in sizes if q != known and (sizes[q] <= max_bytes) == (fit_q is not None)]
            if same_side:  # two probes on one side of the target: measure the slope instead of assuming it
                other = min(same_side, key=lambda q: abs(q - known))
                measured = (math.log(sizes[other]) - math.log(sizes[known])) / (other - known)
                slope = measured if measured > 0 else slope
            guess = known + (math.log(max_bytes * (1 - tolerance / 2)) - math.log(sizes[known])) / slope
            guess = min(max(guess, lowest), highest)
            if fit_q is not None and (guess <= known or close()):  # fits closely: only `highest` could beat it
                guess = highest
            elif guess == known:  # pinned at the lowest quality, which was already probed
                guess = lowest
        if fit_q is None and len(sizes) == max_encodes - 1:  # the last encode settles whether anything fits
            guess = lowest
        quality = round(round(guess / step) * step, 10)
        if quality in sizes:  # the grid is exhausted between the bracket's ends
            break

    if best is None and lowest not in sizes:  # settle whether the target can be met at all
        probe(lowest)
    if best is None:
        raise RateTargetError(
            f"even the lowest quality ({lowest:g}) gives {sizes[lowest]} bytes, "
            f"{sizes[lowest] / max_bytes:.2f}x the target of {max_bytes} bytes")
    return RateSearch(quality=best[0], data=best[1], encodes=len(sizes))
