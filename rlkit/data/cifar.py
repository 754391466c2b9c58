"""CIFAR-10 and CIFAR-100 "python version" files: pickled dicts of NumPy arrays, read with an unpickler that can
build nothing else (a pickle may call any importable function while it loads)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.errors import UserError

try:  # NumPy 2 moved the array rebuilder; the official CIFAR pickles name it by its NumPy-1 path
    from numpy._core.multiarray import _reconstruct as np_reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct as np_reconstruct

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
"""CIFAR-10's class names, label 0 first, as its ``batches.meta`` lists them."""


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    # Python 3 writes bytes at pickle protocol 2 as _codecs.encode(text, "latin1"); allow that call and no other.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed to turn text into latin-1 bytes")
    return text.encode("latin-1")


class _NdarrayName:
    """What the name ``numpy.ndarray`` stands for in a CIFAR pickle: the official files only pass it to the array
    rebuilder, never call it. Called as a constructor, ``ndarray(shape, dtype)`` would allocate whatever shape the
    file declares (a 300-byte pickle can ask for gigabytes), so calling it is refused."""

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise pickle.UnpicklingError("numpy.ndarray is called as a constructor (the official CIFAR files never do: "
                                     "it would allocate the size the file declares, not the data it holds)")


NDARRAY = _NdarrayName()


def _reconstruct_empty(subtype: object, shape: object, dtype: object) -> np.ndarray:
    # The official files rebuild every array as an empty (0,) ndarray and then fill it from the bytes that follow
    # (``__setstate__`` checks that they match its shape): memory is bounded by the file. Any other shape is refused.
    if subtype is not NDARRAY or shape != (0,):
        raise pickle.UnpicklingError(f"the array rebuilder is called with {shape!r} (the official CIFAR files only "
                                     "rebuild empty ndarrays and fill them from their own bytes)")
    return np_reconstruct(np.ndarray, shape, dtype)


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that can build the official CIFAR files and nothing else.

    A pickle can call any importable function while it loads (``os.system`` included), so ``find_class`` allows only
    what the official batches reference: NumPy's array rebuilder (under its NumPy-1 and NumPy-2 paths; only for the
    empty arrays the files fill from their own bytes), ``ndarray`` (as a name to pass it, never to call), ``dtype``,
    plus the latin-1 encoder that Python 3 uses for bytes at protocol 2.
    """

    ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct_empty,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct_empty,
        ("numpy", "ndarray"): NDARRAY,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def __init__(self, file: io.BufferedIOBase, path: Path):
        super().__init__(file, encoding="bytes")  # the files were written by Python 2: its str is our bytes
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise UserError(f"refusing to load {self.path}: unsafe pickle (it references {module}.{name}, which the "
                            "official CIFAR files never do): use the files from the official CIFAR archive")
        return self.ALLOWED[(module, name)]


def read_cifar_pickle(path: str | Path) -> dict[bytes, Any]:
    """Read one CIFAR "python version" file (a batch or the meta file) safely; keys come back as bytes.

    Raises:
        UserError: missing, truncated or corrupt, or referencing anything the official files do not.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            content = _CifarUnpickler(file, path).load()
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"no such file {path}: check the path or download the data set") from None
    except Exception as error:  # the bytes are untrusted: any failure to parse them means a bad file
        raise UserError(f"{path} is truncated or corrupt ({type(error).__name__}: {error}): re-download it") from None
    if not isinstance(content, dict):
        raise UserError(f"{path} holds a {type(content).__name__}, not a CIFAR batch dict: re-download it")
    # A copy re-saved by Python 3 may have text keys; the official ones are bytes.
    return {key.encode("latin-1") if isinstance(key, str) else key: value for key, value in content.items()}
