"""Reading and writing the video codec's inputs and outputs: folders of frames and video files, through PyAV.

Every problem with a video (missing, empty, undecodable, no video stream, frames of mixed sizes) becomes
``UnsupportedVideoError`` naming the path, never a raw PyAV traceback. Frames are handed around as RGB
``PIL.Image`` objects of one size; other modes go through ``image_io`` so they convert exactly as a still
image would (16-bit scaled, alpha dropped). Writers never overwrite unless ``force`` and write atomically,
so an interrupted write leaves no half file behind.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

from ..errors import UnsupportedImageError, UnsupportedVideoError
from .atomic_write import write_atomically
from .image_io import IMAGE_SUFFIXES, open_image, to_output, to_tensor

__all__ = ["Video", "VideoStream", "check_video_target", "open_video", "read_video", "save_frames", "write_frames",
           "write_video"]

DEFAULT_FPS = Fraction(25)
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".y4m", ".gif")  # animated GIFs: FFmpeg decodes them
CRF = 12  # libx264: visually lossless, so what we measure is our codec's loss, not the container's
MPEG4_QSCALE = 2  # fallback encoder's equivalent: the finest quantiser that keeps sizes sane


@dataclass(frozen=True)
class Video:
    """Decoded frames (RGB, all the same size) and the frame rate to play them at."""

    frames: list[Image.Image]
    fps: Fraction


@dataclass(frozen=True)
class VideoStream:
    """Frames read one at a time as they are iterated (memory flat in the clip length), and the frame rate.

    Problems found while reading (an undecodable frame, a size change, no frames at all) are raised by the
    iteration as ``UnsupportedVideoError``.
    """

    frames: Iterator[Image.Image]
    fps: Fraction


def open_video(
    path: str | os.PathLike, *, fps: Fraction | float | None = None, max_frames: int | None = None
) -> VideoStream:
    """A folder of image frames (natural name order: f2 before f10) or a video file PyAV can demux, as a stream.

    ``fps`` overrides the rate; by default a folder plays at 25 fps and a file at its stream's average rate
    (else its base rate). ``max_frames`` keeps only the first frames (the rest are not decoded). The path, its
    type and the rate are checked now; the frames are decoded as they are iterated.
    """
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    rate = None if fps is None else _as_fps(fps)
    if path.is_dir():
        return VideoStream(_read_folder(path, max_frames), rate or DEFAULT_FPS)
    if not path.exists():
        raise UnsupportedVideoError(f"{path}: no such file or folder")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UnsupportedVideoError(
            f"{path}: unsupported video type {path.suffix!r}; use a folder of frames or one of"
            f" {', '.join(VIDEO_SUFFIXES)}")
    return _read_file(path, rate, max_frames)


def read_video(
    path: str | os.PathLike, *, fps: Fraction | float | None = None, max_frames: int | None = None
) -> Video:
    """All frames of :func:`open_video` in memory at once."""
    stream = open_video(path, fps=fps, max_frames=max_frames)
    return Video(list(stream.frames), stream.fps)


def write_video(path: str | os.PathLike, frames: Iterable[Image.Image], fps: Fraction | float, *,
                force: bool = False) -> None:
    """Encode ``frames`` as a high-quality .mp4 (H.264 via libx264 at crf 12, else MPEG-4 part 2), yuv420p.

    ``frames`` may be any iterable: each frame is encoded as it comes, so a decoder's frame iterator streams
    into the file. yuv420p halves the chroma resolution, so width and height must be even: odd sizes are
    refused rather than padded, which would silently change the size. The stream is tagged BT.601 limited
    range, the conversion PyAV applies, so players show the colours that were encoded.
    """
    path = Path(path)
    rate = _as_fps(fps)
    _check_new(path, force)
    frames = _rgb_frames(frames, path)
    first = next(frames)
    check_video_target(path, *first.size)
    try:
        write_atomically(path, lambda tmp: _encode_mp4(tmp, itertools.chain([first], frames), rate))
    except av.error.FFmpegError as exc:
        raise UnsupportedVideoError(f"cannot encode {path}: {exc}") from exc


def check_video_target(path: str | os.PathLike, width: int, height: int) -> None:
    """Refuse, before any decoding work, a video :func:`write_video` could not write: not .mp4, or an odd size."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise UnsupportedVideoError(f"{path}: can only write .mp4 videos (or use write_frames for PNG frames)")
    if width % 2 or height % 2:
        raise UnsupportedVideoError(
            f"{path}: frames are {width}x{height}, but yuv420p video needs an even width and height;"
            " crop or pad the frames by one pixel first")


def write_frames(folder: str | os.PathLike, frames: Sequence[Image.Image], *, force: bool = False) -> list[Path]:
    """Save ``frames`` as ``folder/f001.png``, ``f002.png``, ... (at least 3 digits); returns the paths.

    The folder is created if needed (its parent must exist). With ``force`` existing targets are overwritten,
    but other files already in the folder (say ``f099.png`` from a longer clip) are left as they are.
    """
    paths = frame_paths(folder, len(frames))
    for _ in save_frames(folder, frames, count=len(frames), force=force):
        pass
    return paths


def frame_paths(folder: str | os.PathLike, count: int) -> list[Path]:
    """The names :func:`write_frames` gives ``count`` frames."""
    digits = max(3, len(str(count)))
    return [Path(folder) / f"f{i:0{digits}d}.png" for i in range(1, count + 1)]


def save_frames(folder: str | os.PathLike, frames: Iterable[Image.Image], *, count: int,
                force: bool = False) -> Iterator[Image.Image]:
    """Save each of ``count`` frames as :func:`write_frames` does, as it comes, then pass it on (to stream one
    decode into PNG frames and a video at once). Existing targets are refused before the first frame."""
    folder = Path(folder)
    paths = frame_paths(folder, count)
    for path in paths:
        _check_new(path, force)
    if not folder.parent.is_dir():
        raise FileNotFoundError(f"folder {folder.parent} does not exist")
    folder.mkdir(exist_ok=True)
    written = 0
    for frame, path in zip(_rgb_frames(frames, folder), paths, strict=False):
        write_atomically(path, lambda tmp, frame=frame: frame.save(tmp, format="PNG"))
        written += 1
        yield frame
    if written != count:
        raise UnsupportedVideoError(f"{folder}: expected {count} frames, got {written}")


def _as_fps(fps: Fraction | float) -> Fraction:
    """A positive rational rate; floats are rounded to the nearest fraction with denominator <= 1001."""
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return rate


def _natural_key(path: Path) -> list[str | int]:
    """Sort key that orders the digit runs in a name as numbers: f2 < f10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB as the still-image codec sees it (Pillow's own convert clips 16-bit values instead of scaling)."""
    if image.mode == "RGB":
        return image
    x, _ = to_tensor(image)
    return to_output(x, "pil", "RGB")[0]


def _rgb_frames(frames: Iterable[Image.Image], source: Path) -> Iterator[Image.Image]:
    """RGB copies of ``frames`` as they come, refusing an empty clip or frames of different sizes."""
    size = None
    for i, frame in enumerate(frames):
        if size is None:
            size = frame.size
        elif frame.size != size:
            raise UnsupportedVideoError(
                f"{source}: frame {i + 1} is {frame.width}x{frame.height} but frame 1 is {size[0]}x{size[1]};"
                " all frames must be the same size")
        yield _to_rgb(frame)
    if size is None:
        raise UnsupportedVideoError(f"{source}: no frames")


def _check_new(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists (pass force=True to overwrite)")


def _read_folder(folder: Path, max_frames: int | None) -> Iterator[Image.Image]:
    """Frames from the image files directly in ``folder`` (hidden files, e.g. half-written ones, skipped); the
    folder is listed now, each frame read as it is iterated."""
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                   key=_natural_key)
    if not files:
        raise UnsupportedVideoError(f"{folder}: no image frames ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return _folder_frames(folder, files[:max_frames])


def _folder_frames(folder: Path, files: list[Path]) -> Iterator[Image.Image]:
    size = None
    for file in files:
        try:
            image = _to_rgb(open_image(file))
        except UnsupportedImageError as exc:
            raise UnsupportedVideoError(f"{folder}: {exc}") from exc
        if size is not None and image.size != size:
            raise UnsupportedVideoError(
                f"{folder}: {file.name} is {image.width}x{image.height} but {files[0].name} is"
                f" {size[0]}x{size[1]}; all frames must be the same size")
        size = image.size
        yield image


def _read_file(path: Path, fps: Fraction | None, max_frames: int | None) -> VideoStream:
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise UnsupportedVideoError(f"cannot read video {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise UnsupportedVideoError(f"{path}: no video stream in this file")
    stream = container.streams.video[0]
    fps = fps or stream.average_rate or stream.base_rate
    if not fps:
        container.close()
        raise UnsupportedVideoError(f"{path}: the stream has no frame rate; pass fps")
    return VideoStream(_file_frames(path, container, stream, max_frames), Fraction(fps))


def _file_frames(path: Path, container, stream, max_frames: int | None) -> Iterator[Image.Image]:
    count, size = 0, None
    try:
        for frame in container.decode(stream):
            image = _to_rgb(frame.to_image())
            if size is not None and image.size != size:
                raise UnsupportedVideoError(f"{path}: the frame size changes within the stream, which is not "
                                            "supported")
            size, count = image.size, count + 1
            yield image
            if count == max_frames:
                break
    except av.error.FFmpegError as exc:
        raise UnsupportedVideoError(f"cannot read video {path}: {exc}") from exc
    finally:
        container.close()
    if not count:
        raise UnsupportedVideoError(f"{path}: no decodable video frames")


def _encode_mp4(path: Path, frames: Iterable[Image.Image], fps: Fraction) -> None:
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = first.size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(CRF)}
        else:  # ffmpeg's -q:v: a fixed quantiser instead of the low default bitrate
            stream.options = {"flags": "+qscale", "global_quality": str(MPEG4_QSCALE * 118)}  # FF_QP2LAMBDA
        ctx = stream.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 6  # SMPTE 170M (BT.601), as from_image converts
        ctx.color_range = 1  # limited ("tv") range
        for frame in itertools.chain([first], frames):
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())  # flush delayed frames
