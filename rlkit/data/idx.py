"""IDX files, the format of MNIST and Fashion-MNIST (``train-images-idx3-ubyte.gz`` ...), gzip-compressed or not.

The format, from the MNIST page: two zero bytes, a type code, the number of dimensions, each dimension as a
big-endian uint32, then the values, big-endian, row-major.
"""

from __future__ import annotations

import gzip as gzip_lib
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rlkit.errors import UserError

# type code -> big-endian dtype, from the format's description on the MNIST page
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


MAX_DEFLATE_RATIO = 1032
"""The most bytes one compressed byte can inflate to (deflate's limit): a header that promises more than the
compressed file could hold is refused before anything is decompressed."""
CHUNK = 1 << 20


def _open_maybe_gzip(path: Path) -> tuple[BinaryIO, int, bool]:
    """(a stream of the file's bytes, decompressed when it starts with the gzip magic whatever its name says, the
    file's size on disk, whether it is compressed). Decompression is incremental: nothing is read that is not asked
    for, so a decompression bomb costs only what the header declares."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise UserError(f"no such file {path}: check the path or download the data set") from None
    size = os.fstat(file.fileno()).st_size
    if file.read(2) != GZIP_MAGIC:
        file.seek(0)
        return file, size, False
    file.seek(0)
    return gzip_lib.GzipFile(fileobj=file, mode="rb"), size, True


def _read_exactly(stream: BinaryIO, count: int) -> bytearray:
    """Up to ``count`` bytes, fewer only at the end of the stream; read in chunks, never more than asked for."""
    data = bytearray()
    while len(data) < count:
        chunk = stream.read(min(CHUNK, count - len(data)))
        if not chunk:
            break
        data += chunk
    return data  # a bytearray: no second copy


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a native-endian array of the shape its header gives.

    Memory is bounded by the header: the values are decompressed incrementally, at most as many bytes as the header
    declares, and a file holding more is refused (a gzip bomb stops there), as is a header declaring more than the
    file's size could hold.

    Raises:
        UserError: not an IDX file, or truncated or corrupt; the message names the file.
    """
    path = Path(path)
    stream, file_size, compressed = _open_maybe_gzip(path)
    try:
        with stream:
            return _read_idx_stream(path, stream, file_size, compressed)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path} is a truncated or corrupt gzip file ({error}): delete it and re-download it") from None


def _read_idx_stream(path: Path, stream: BinaryIO, file_size: int, compressed: bool) -> np.ndarray:
    start = _read_exactly(stream, 4)
    if len(start) < 4 or start[0] != 0 or start[1] != 0:
        raise UserError(f"{path} is not an IDX file (it starts with {start[:4].hex() or 'nothing'}, not 0000): "
                        "pass an MNIST-format file such as train-images-idx3-ubyte.gz, or re-download it")
    code, ndim = start[2], start[3]
    if code not in IDX_TYPES:
        raise UserError(f"{path} has an unknown IDX type code 0x{code:02X}: the file is corrupt, re-download it")
    dims = _read_exactly(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise UserError(f"{path} is truncated (it ends inside its header): re-download it")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: no overflow on absurd headers
    most = file_size * MAX_DEFLATE_RATIO if compressed else file_size - 4 - 4 * ndim
    if expected > most:
        raise UserError(f"{path} is truncated or corrupt: its header promises {shape} values of {dtype.name} "
                        f"({expected} bytes), more than its {file_size} bytes can hold: re-download it")
    data = _read_exactly(stream, expected)
    extra = len(stream.read(1)) if len(data) == expected else 0  # a gzip stream checks its CRC on reaching the end
    if len(data) != expected or extra:
        follow = f"{len(data)} bytes follow" if not extra else "more bytes follow"
        raise UserError(f"{path} is truncated or corrupt: its header promises {shape} values of {dtype.name} "
                        f"({expected} bytes) but {follow}: re-download it")
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))
