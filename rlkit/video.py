"""Write RGB frames to an MP4 file (H.264 through PyAV, whose wheel carries its own FFmpeg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class VideoWriter:
    """``with VideoWriter("episode.mp4", fps=30) as w: w.write(frame)`` for (H, W, 3) uint8 frames."""

    def __init__(self, path: str | Path, fps: int = 30):
        self.path, self.fps = Path(path), int(fps)
        self._container = None
        self._stream = None

    def __enter__(self) -> "VideoWriter":
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w")
        return self

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = np.ascontiguousarray(frame, dtype=np.uint8)
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
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
