"""What an MP4 file holds, read from its boxes: the video track's size and frame count.

Enough of ISO/IEC 14496-12 for the tests to check a generated video without a decoder: the
track header (``tkhd``) carries the picture's width and height as 16.16 fixed-point numbers,
and the sample-size table (``stsz``) has one entry per frame.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["VideoTrack", "video_track"]

# Boxes that hold other boxes, on the way from the file down to a track's tables.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


@dataclass(frozen=True)
class VideoTrack:
    width: int
    height: int
    frames: int


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box between ``start`` and ``end``."""
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
            header = 16
        elif size == 0:
            size = end - offset
        if size < header:
            raise ValueError(f"box {kind!r} at {offset} has a bad size {size}")
        yield kind, offset + header, offset + size
        offset += size


def _tracks(data: bytes) -> Iterator[dict[bytes, bytes]]:
    """The payloads of ``tkhd``, ``hdlr`` and ``stsz`` of each track."""
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for trak, trak_start, trak_end in _boxes(data, start, end):
            if trak == b"trak":
                found: dict[bytes, bytes] = {}
                _collect(data, trak_start, trak_end, found)
                yield found


def _collect(data: bytes, start: int, end: int, found: dict[bytes, bytes]) -> None:
    for kind, payload, box_end in _boxes(data, start, end):
        if kind in _CONTAINERS:
            _collect(data, payload, box_end, found)
        elif kind in (b"tkhd", b"hdlr", b"stsz"):
            found[kind] = data[payload:box_end]


def video_track(data: bytes) -> VideoTrack:
    """The one video track of an MP4 file: its picture size and number of frames."""
    if data[4:8] != b"ftyp":
        raise ValueError("not an MP4 file: it does not start with an ftyp box")
    videos = [track for track in _tracks(data) if track.get(b"hdlr", b"")[8:12] == b"vide"]
    if len(videos) != 1:
        raise ValueError(f"expected one video track, found {len(videos)}")
    (track,) = videos
    tkhd = track[b"tkhd"]
    width, height = struct.unpack(">II", tkhd[-8:])
    (frames,) = struct.unpack(">I", track[b"stsz"][8:12])
    return VideoTrack(width >> 16, height >> 16, frames)
