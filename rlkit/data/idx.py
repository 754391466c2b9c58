"""IDX files, the format of MNIST and Fashion-MNIST (``train-images-idx3-ubyte.gz`` ...), gzip-compressed or not.

The format, from the MNIST page: two zero bytes, a type code, the number of dimensions, each dimension as a
big-endian uint32, then the values, big-endian, row-major.
"""

from __future__ import annotations

import gzip as gzip_lib
import struct
import zlib
from pathlib import Path

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


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic (whatever its name says)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such file {path}: check the path or download the data set") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip_lib.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{path} is a truncated or corrupt gzip file ({error}): delete it and re-download it") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a native-endian array of the shape its header gives.

    Raises:
        UserError: not an IDX file, or truncated or corrupt; the message names the file.
    """
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{path} is not an IDX file (it starts with {data[:4].hex() or 'nothing'}, not 0000): "
                        "pass an MNIST-format file such as train-images-idx3-ubyte.gz, or re-download it")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        raise UserError(f"{path} has an unknown IDX type code 0x{code:02X}: the file is corrupt, re-download it")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated (it ends inside its header): re-download it")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: no overflow on absurd headers
    if len(data) - header != expected:
        raise UserError(f"{path} is truncated or corrupt: its header promises {shape} values of {dtype.name} "
                        f"({expected} bytes) but {len(data) - header} bytes follow: re-download it")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))

