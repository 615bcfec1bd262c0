"""video_io: frame folders and video files in and out, and every refusal as a typed error."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from rdc_diffusers.errors import UnsupportedVideoError
from rdc_diffusers.media import video_io
from rdc_diffusers.media.video_io import Video, read_video, write_frames, write_video

W, H = 64, 48
CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video" / "BasketballPass_416x240"


def make_frames(n: int = 6, w: int = W, h: int = H) -> list[Image.Image]:
    """Smooth gradients with a bright square moving right: easy to code, easy to tell apart."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    frames = []
    for i in range(n):
        a = base.copy()
        a[10:20, 4 + 4 * i:14 + 4 * i] = (240, 220, 40)
        frames.append(Image.fromarray(a))
    return frames


def mean_abs_diff(a: list[Image.Image], b: list[Image.Image]) -> float:
    diffs = [np.abs(np.asarray(x, float) - np.asarray(y, float)).mean() for x, y in zip(a, b, strict=True)]
    return float(np.mean(diffs))


def assert_same_pixels(a: list[Image.Image], b: list[Image.Image]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.mode == "RGB" and np.array_equal(np.asarray(x), np.asarray(y))


# ---- frame folders ------------------------------------------------------------------------------------------------

def test_png_folder_round_trip_is_exact(tmp_path):
    frames = make_frames(12)
    paths = write_frames(tmp_path / "clip", frames)
    assert [p.name for p in paths] == [f"f{i:03d}.png" for i in range(1, 13)]
    video = read_video(tmp_path / "clip")
    assert isinstance(video, Video) and video.fps == Fraction(25)
    assert_same_pixels(video.frames, frames)
    assert len(read_video(tmp_path / "clip", max_frames=5).frames) == 5


def test_folder_natural_order_and_fps(tmp_path):
    frames = make_frames(3)
    for name, frame in zip(["f10.png", "f2.png", "f1.png"], reversed(frames), strict=True):
        frame.save(tmp_path / name)
    (tmp_path / "MANIFEST.csv").write_text("not a frame\n")
    video = read_video(tmp_path, fps=Fraction(30000, 1001))
    assert_same_pixels(video.frames, frames)  # f1, f2, f10
    assert video.fps == Fraction(30000, 1001)
    assert read_video(tmp_path, fps=29.97).fps == Fraction(2997, 100)


def test_write_frames_refuses_existing_unless_force(tmp_path):
    write_frames(tmp_path / "clip", make_frames(2))
    with pytest.raises(FileExistsError, match="f001.png already exists"):
        write_frames(tmp_path / "clip", make_frames(3))
    assert len(list((tmp_path / "clip").iterdir())) == 2  # nothing written by the refused call
    write_frames(tmp_path / "clip", make_frames(3)[::-1], force=True)
    assert_same_pixels(read_video(tmp_path / "clip").frames, make_frames(3)[::-1])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_frames(tmp_path / "no" / "clip", make_frames(1))


def test_sixteen_bit_frames_are_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((H, W), 40000, np.uint16)).save(tmp_path / "f1.png")
    frame = read_video(tmp_path).frames[0]
    assert frame.mode == "RGB" and np.asarray(frame)[0, 0].tolist() == [156] * 3  # 40000 / 65535 * 255


# ---- video files --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001)])
def test_mp4_round_trip(tmp_path, fps):
    frames = make_frames(8)
    write_video(tmp_path / "clip.mp4", frames, fps)
    with av.open(str(tmp_path / "clip.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    video = read_video(tmp_path / "clip.mp4")
    assert len(video.frames) == 8 and video.fps == fps
    assert all(f.mode == "RGB" and f.size == (W, H) for f in video.frames)
    assert mean_abs_diff(video.frames, frames) < 4
    assert len(read_video(tmp_path / "clip.mp4", max_frames=3, fps=10).frames) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left behind


def test_mp4_falls_back_to_mpeg4_without_libx264(tmp_path, monkeypatch):
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    frames = make_frames(4)
    write_video(tmp_path / "clip.mp4", frames, 24)
    with av.open(str(tmp_path / "clip.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    video = read_video(tmp_path / "clip.mp4")
    assert len(video.frames) == 4 and video.fps == 24 and mean_abs_diff(video.frames, frames) < 4


def write_y4m(path: Path, frames: list[Image.Image], fps: Fraction) -> None:
    with av.open(str(path), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame).reformat(format="yuv420p")))
        container.mux(stream.encode())


def test_y4m(tmp_path):
    frames = make_frames(5)
    write_y4m(tmp_path / "clip.y4m", frames, Fraction(24000, 1001))
    video = read_video(tmp_path / "clip.y4m")
    assert len(video.frames) == 5 and video.fps == Fraction(24000, 1001)
    assert video.frames[0].size == (W, H) and mean_abs_diff(video.frames, frames) < 4


@pytest.mark.skipif(not CLIP.is_dir(), reason=f"{CLIP} not available")
def test_real_clip():
    video = read_video(CLIP)
    assert len(video.frames) == 32 and {f.size for f in video.frames} == {(416, 240)}
    assert len(read_video(CLIP, max_frames=5).frames) == 5


# ---- refusals -----------------------------------------------------------------------------------------------------

def test_read_errors(tmp_path):
    with pytest.raises(UnsupportedVideoError, match="no such file or folder"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnsupportedVideoError, match="no image frames"):
        read_video(tmp_path / "empty")
    (tmp_path / "mixed").mkdir()
    make_frames(1)[0].save(tmp_path / "mixed" / "f1.png")
    make_frames(1, w=32)[0].save(tmp_path / "mixed" / "f2.png")
    with pytest.raises(UnsupportedVideoError, match="f2.png is 32x48 but f1.png is 64x48"):
        read_video(tmp_path / "mixed")
    (tmp_path / "fake.mp4").write_text("this is not a video\n")
    with pytest.raises(UnsupportedVideoError, match="cannot read video .*fake.mp4: .*Invalid data"):
        read_video(tmp_path / "fake.mp4")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(UnsupportedVideoError, match="unsupported video type '.txt'"):
        read_video(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="max_frames"):
        read_video(tmp_path / "fake.mp4", max_frames=0)


def test_file_without_video_stream_or_frames(tmp_path):
    with av.open(str(tmp_path / "audio.mkv"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(UnsupportedVideoError, match="no video stream"):
        read_video(tmp_path / "audio.mkv")
    (tmp_path / "header.y4m").write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A0:0 C420jpeg\n")
    with pytest.raises(UnsupportedVideoError, match="no decodable video frames"):
        read_video(tmp_path / "header.y4m")


def test_write_video_errors(tmp_path):
    out = tmp_path / "clip.mp4"
    write_video(out, make_frames(2), 25)
    with pytest.raises(FileExistsError, match="clip.mp4 already exists"):
        write_video(out, make_frames(3), 25)
    assert len(read_video(out).frames) == 2
    write_video(out, make_frames(3), 25, force=True)
    assert len(read_video(out).frames) == 3
    with pytest.raises(UnsupportedVideoError, match="65x48.*even width and height"):
        write_video(tmp_path / "odd.mp4", make_frames(2, w=65), 25)
    with pytest.raises(UnsupportedVideoError, match="can only write .mp4"):
        write_video(tmp_path / "clip.avi", make_frames(2), 25)
    with pytest.raises(UnsupportedVideoError, match="frame 2 is 32x48 but frame 1 is 64x48"):
        write_video(tmp_path / "mixed.mp4", make_frames(1) + make_frames(1, w=32), 25)
    with pytest.raises(UnsupportedVideoError, match="no frames"):
        write_video(tmp_path / "none.mp4", [], 25)
    with pytest.raises(ValueError, match="fps must be positive"):
        write_video(tmp_path / "zero.mp4", make_frames(2), 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def fail_halfway(path, frames, fps):
        Path(path).write_bytes(b"half a video")
        raise KeyboardInterrupt

    monkeypatch.setattr(video_io, "_encode_mp4", fail_halfway)
    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path / "clip.mp4", make_frames(2), 25)
    assert list(tmp_path.iterdir()) == []


# ---- streaming ----------------------------------------------------------------------------------------------------

def test_open_video_reads_frames_only_as_they_are_iterated(tmp_path, monkeypatch):
    write_frames(tmp_path / "clip", make_frames(4))
    write_video(tmp_path / "clip.mp4", make_frames(4), 25)
    opened = []
    original = video_io.open_image
    monkeypatch.setattr(video_io, "open_image", lambda path: opened.append(path) or original(path))
    stream = video_io.open_video(tmp_path / "clip")
    assert opened == [] and stream.fps == 25
    assert next(stream.frames).size == (W, H) and len(opened) == 1
    assert len(list(stream.frames)) == 3 and len(opened) == 4
    from_file = video_io.open_video(tmp_path / "clip.mp4", max_frames=2)
    assert from_file.fps == 25 and len(list(from_file.frames)) == 2


def test_write_video_and_save_frames_take_a_generator(tmp_path):
    def frames():
        yield from make_frames(5)

    saved = video_io.save_frames(tmp_path / "out", frames(), count=5)
    write_video(tmp_path / "clip.mp4", saved, 25)
    assert len(read_video(tmp_path / "clip.mp4").frames) == 5
    assert_same_pixels(read_video(tmp_path / "out").frames, make_frames(5))
    with pytest.raises(UnsupportedVideoError, match="expected 6 frames, got 5"):
        list(video_io.save_frames(tmp_path / "more", frames(), count=6))
    with pytest.raises(UnsupportedVideoError, match="no frames"):
        write_video(tmp_path / "empty.mp4", iter([]), 25)
    assert not (tmp_path / "empty.mp4").exists()
