"""Write RGB frames to an MP4 file (H.264 through PyAV, whose wheel carries its own FFmpeg) or an animated GIF
(Pillow, a palette of its own per frame), and show a recorded game in TensorBoard as an animated GIF (TensorBoard's
own ``add_video`` needs moviepy)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".gif")
"""The files :class:`VideoWriter` writes: H.264 MP4, or an animated GIF (for a README or slides)."""
GIF_MAX_FRAMES = 60
"""Frames kept in TensorBoard's GIF of a game (evenly spaced): event files stay small; the MP4 has them all."""
GIF_MAX_WIDTH = 160
"""Pixels across TensorBoard's GIF (frames are scaled down to it, keeping their aspect)."""


def check_video_path(path: str | Path, flag: str = "--video") -> Path:
    """``path`` once it names a file :class:`VideoWriter` can write: checked before the games it records are
    played, so a wrong name costs no evaluation."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: name a file in it, e.g. {path / 'game.mp4'}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{flag} {path}: name an .mp4 or .gif file (e.g. {path.with_suffix('.mp4').name})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path} is under {parent}, which is a file")
            break
    return path


class VideoWriter:
    """``with VideoWriter("episode.mp4", fps=30) as w: w.write(frame)`` for (H, W, 3) uint8 frames; a ``.gif``
    path gives an animated GIF instead."""

    def __init__(self, path: str | Path, fps: int = 30):
        self.path, self.fps = check_video_path(path, "video"), int(fps)
        self._gif = self.path.suffix.lower() == ".gif"
        self._container = None
        self._stream = None
        self._images: list[Any] = []

    def __enter__(self) -> "VideoWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._gif:
            import av

            self._container = av.open(str(self.path), mode="w")
        return self

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self._gif:
            from PIL import Image

            self._images.append(Image.fromarray(frame).quantize(256))  # kept as palette images, a third the size
            return
        import av

        if self._stream is None:
            # H.264 wants even sizes; the frames are padded by at most one pixel.
            height, width = frame.shape[:2]
            self._stream = self._container.add_stream("libx264", rate=self.fps)
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
        pad_h, pad_w = self._stream.height - frame.shape[0], self._stream.width - frame.shape[1]
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)))
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)

    def __exit__(self, *exc) -> None:
        if self._gif:
            if self._images:
                # GIF delays are whole hundredths of a second; optimize=False keeps one GIF frame per frame
                self._images[0].save(self.path, format="GIF", save_all=True, append_images=self._images[1:],
                                     loop=0, duration=max(20, round(1000 / self.fps, -1)), optimize=False)
            return
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()


def read_frames(path: str | Path, every: int = 1) -> list[np.ndarray]:
    """Every ``every``-th frame of a video file as (H, W, 3) uint8 arrays."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for i, frame in enumerate(container.decode(video=0))
                if i % every == 0]


def count_frames(path: str | Path) -> int:
    """The number of frames a video file decodes to."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def gif_bytes(frames: list[np.ndarray], fps: float) -> bytes:
    """An animated GIF of ``frames`` shown at ``fps``, scaled down to at most :data:`GIF_MAX_WIDTH` pixels wide."""
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)) for frame in frames]
    width, height = images[0].size
    if width > GIF_MAX_WIDTH:
        size = (GIF_MAX_WIDTH, max(1, round(height * GIF_MAX_WIDTH / width)))
        images = [image.resize(size, Image.Resampling.BILINEAR) for image in images]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 / fps)))
    return buffer.getvalue()


def add_video_gif(writer: Any, tag: str, path: str | Path, step: int) -> None:
    """Show the video at ``path`` in TensorBoard's IMAGES tab under ``tag`` as an animated GIF of at most
    :data:`GIF_MAX_FRAMES` frames (what ``SummaryWriter.add_video`` writes, without moviepy). A writer without a
    file writer (a process that does not log) gets nothing."""
    import av
    from tensorboard.compat.proto.summary_pb2 import Summary

    file_writer = getattr(writer, "file_writer", None)
    if file_writer is None:
        return
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate or 30)
    every = max(1, math.ceil(count_frames(path) / GIF_MAX_FRAMES))
    frames = read_frames(path, every)
    if not frames:
        return
    gif = gif_bytes(frames, fps / every)  # the same game time per GIF frame as in the video
    height, width = frames[0].shape[:2]
    if width > GIF_MAX_WIDTH:
        width, height = GIF_MAX_WIDTH, max(1, round(height * GIF_MAX_WIDTH / width))
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
