"""Rate control: the highest quality whose file fits a byte budget, on synthetic codecs and through the pipeline."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdc_diffusers import RDCPipeline
from rdc_diffusers.bitstream.rdc import decode_file
from rdc_diffusers.errors import RateTargetError
from rdc_diffusers.hub.pretrained import DEFAULT_MODEL
from rdc_diffusers.rate_control import RateSearch, search_quality

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "images" / "kodim23.png"


class SyntheticCodec:
    """File sizes like a learned codec's: a fixed header, then a payload exponential in the quality (``growth``
    times larger at 100 than at 0) with a small deterministic wobble, so sizes are not exactly monotone.
    Counts its encodes."""

    def __init__(self, payload: int, growth: float, header: int = 0, wobble: float = 0.003, seed: int = 0):
        self.payload, self.growth, self.header, self.wobble, self.seed = payload, growth, header, wobble, seed
        self.qualities: list[float] = []

    def size(self, quality: float) -> int:
        jitter = random.Random(f"{self.seed}/{quality:.2f}").uniform(-self.wobble, self.wobble)
        return self.header + round(self.payload * self.growth ** (quality / 100) * (1 + jitter))

    def encode(self, quality: float) -> bytes:
        self.qualities.append(quality)
        return bytes(self.size(quality))


def random_codec(rng: random.Random, seed: int, wobbles: tuple[float, ...] = (0, 0.003, 0.01)) -> SyntheticCodec:
    """Small and large files, slow and fast growth; with the 41..300 header bytes of an .rdc file, a tiny
    image's file grows by much less than its payload."""
    return SyntheticCodec(payload=rng.randint(5, 20000), growth=math.exp(rng.uniform(math.log(3), math.log(100))),
                          header=rng.choice([0, 41, 300]), wobble=rng.choice(wobbles), seed=seed)


def random_cases(count: int = 500):
    """(codec, budget) pairs with budgets anywhere between the sizes at quality 0 and 100."""
    rng = random.Random(0)
    for i in range(count):
        codec = random_codec(rng, seed=i)
        low, high = codec.size(0), codec.size(100)
        yield codec, round(math.exp(rng.uniform(math.log(low), math.log(high))))


def describe(codec: SyntheticCodec, budget: int) -> str:
    return (f"header {codec.header}, payload {codec.payload}, growth {codec.growth:.1f}, wobble {codec.wobble}, "
            f"budget {budget}: probed {codec.qualities}")


def test_the_search_fits_the_budget_closely_in_few_encodes():
    for codec, budget in random_cases():
        result = search_quality(codec.encode, budget)

        case = describe(codec, budget)
        assert isinstance(result, RateSearch)
        assert len(result.data) <= budget, case
        assert len(result.data) >= 0.97 * budget, case
        assert result.encodes == len(codec.qualities) <= 8, case
        assert result.data == codec.encode(result.quality)  # the file is the one coded at the quality returned
        assert 0 <= result.quality <= 100 and round(result.quality, 2) == result.quality


def test_a_budget_above_the_largest_file_gives_quality_100():
    rng = random.Random(1)
    for seed in range(300):
        codec = random_codec(rng, seed, wobbles=(0,))  # monotone: no quality just below 100 is larger
        budget = round(codec.size(100) * rng.choice([1.0, rng.uniform(1.0, 1.03), rng.uniform(1.0, 10.0)]))

        result = search_quality(codec.encode, budget)

        assert result.quality == 100, describe(codec, budget)
        assert result.encodes <= 8


def test_a_budget_below_the_smallest_file_is_refused_naming_its_size():
    for seed, budget_share in enumerate((0.99, 0.5, 0.01)):
        codec = SyntheticCodec(payload=1000, growth=12, header=41, seed=seed)
        smallest = codec.size(0)
        budget = math.floor(smallest * budget_share)

        with pytest.raises(RateTargetError) as info:
            search_quality(codec.encode, budget)

        assert f"{smallest} bytes" in str(info.value) and str(budget) in str(info.value)
        assert 0 in codec.qualities and len(codec.qualities) <= 8
    assert isinstance(info.value, ValueError)  # a caller's impossible request


def test_a_budget_of_nothing_is_refused_before_encoding():
    codec = SyntheticCodec(payload=1000, growth=12)
    with pytest.raises(RateTargetError):
        search_quality(codec.encode, 0)
    assert codec.qualities == []


# --- through the pipeline: the bundled model on a real photo ----------------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> RDCPipeline:
    pipe = RDCPipeline.from_pretrained(DEFAULT_MODEL)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(EXAMPLE).convert("RGB").crop((256, 128, 384, 256))  # 128 x 128


def bpp(data: bytes, image: Image.Image) -> float:
    return 8 * len(data) / (image.width * image.height)


def test_target_bpp_gives_the_best_quality_that_fits(bundled, photo):
    lowest, highest = bpp(bundled.compress(photo, quality=0), photo), bpp(bundled.compress(photo, quality=100), photo)
    for share in (0.1, 0.35, 0.6, 0.9):
        target = lowest + share * (highest - lowest)

        data = bundled.compress(photo, target_bpp=target)

        assert 0.97 * target <= bpp(data, photo) <= target, (target, bpp(data, photo))
        quality = decode_file(data).header.quality
        assert data == bundled.compress(photo, quality=quality)  # the file is an ordinary file at that quality
        assert bundled.decompress(data, refine=False).images[0].size == photo.size


def test_target_bpp_outside_the_models_range(bundled, photo):
    highest = bpp(bundled.compress(photo, quality=100), photo)
    data = bundled.compress(photo, target_bpp=2 * highest)
    assert decode_file(data).header.quality == 100

    smallest = len(bundled.compress(photo, quality=0))
    with pytest.raises(RateTargetError, match=f"{smallest} bytes"):
        bundled.compress(photo, target_bpp=0.5 * bpp(bundled.compress(photo, quality=0), photo))


def test_call_takes_a_target_bpp(bundled, photo):
    out = bundled(photo, target_bpp=0.4, refine=False, output_type="np")
    assert out.bpp[0] <= 0.4 and out.images.shape == (1, 128, 128, 3)
    np.testing.assert_array_equal(out.images, bundled.decompress(out.data[0], refine=False, output_type="np").images)
