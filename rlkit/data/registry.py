"""The image data sets rlkit knows, where their official files come from, and how to read, check and fetch them.

``DATASETS`` holds each set's files, official URLs and MD5 checksums; :func:`load_dataset` reads a split into
uint8 (N, C, H, W) arrays (MNIST and Fashion-MNIST from IDX files, CIFAR-10 and CIFAR-100 from their pickled
batches); :func:`verify` and :func:`download` check and fetch. From a shell::

    python -m rlkit.data download cifar10 --data-dir data/cifar10
    python -m rlkit.data verify mnist --data-dir data/mnist
"""

from __future__ import annotations

import gzip as gzip_lib
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NamedTuple

import numpy as np

from rlkit.data.cifar import read_cifar_pickle
from rlkit.data.idx import GZIP_MAGIC, read_idx
from rlkit.errors import UserError

DOWNLOAD_COMMAND = "python -m rlkit.data download {name} --data-dir {data_dir}"


# ---------------------------------------------------------------------------------------------------- registry
class LabelSet(NamedTuple):
    """One kind of label a data set has (CIFAR-100 has two)."""

    num_classes: int
    key: bytes = b""
    """CIFAR: the batch dict's key that holds these labels."""
    names_key: bytes = b""
    """CIFAR: the meta dict's key that holds the class names."""


@dataclass(frozen=True, eq=False)
class DatasetInfo:
    """Where a data set comes from and how its files are laid out."""

    name: str
    format: str
    """"idx" (MNIST-style gzip files) or "cifar" (a folder of pickled batches inside a tar.gz)."""
    homepage: str
    mirrors: tuple[str, ...]
    """Base URLs tried in order; a download's URL is mirror + its file name."""
    downloads: dict[str, str]
    """File fetched -> official MD5 of its bytes (IDX: each .gz; CIFAR: the archive)."""
    splits: dict[str, tuple[str, ...]]
    """Split -> the files it reads (IDX: images then labels, named without .gz; CIFAR: the batches)."""
    file_md5: dict[str, str]
    """MD5 of each file as read: IDX files uncompressed, CIFAR pickles as extracted (torchvision's values)."""
    image_shape: tuple[int, int, int]
    """(C, H, W) of one image."""
    labels: dict[str, LabelSet]
    """Label kind ("fine", and "coarse" for CIFAR-100) -> its classes."""
    classes: tuple[str, ...] = ()
    """Class names of IDX sets; CIFAR's come from its meta file."""
    folder: str = ""
    """CIFAR: the folder the archive extracts into."""
    meta_file: str = ""
    """CIFAR: the pickle that holds the class names."""

    @property
    def num_classes(self) -> int:
        """Number of (fine) classes."""
        return self.labels["fine"].num_classes

    def url(self, download: str) -> str:
        """The first mirror's URL of a download."""
        return self.mirrors[0] + download


_IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        format="idx",
        homepage="http://yann.lecun.com/exdb/mnist/",
        # The original host now refuses most downloads; torchvision's S3 copy holds the identical files.
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        downloads={  # torchvision/datasets/mnist.py
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        splits=_IDX_SPLITS,
        file_md5={  # computed from the decompressed files; the same values are published by many projects
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        image_shape=(1, 28, 28),
        labels={"fine": LabelSet(10)},
        classes=tuple("0123456789"),
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        format="idx",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        downloads={  # torchvision/datasets/mnist.py (FashionMNIST)
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        splits=_IDX_SPLITS,
        file_md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        image_shape=(1, 28, 28),
        labels={"fine": LabelSet(10)},
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        format="cifar",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        downloads={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},  # torchvision/datasets/cifar.py
        splits={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        file_md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
        image_shape=(3, 32, 32),
        labels={"fine": LabelSet(10, b"labels", b"label_names")},
        folder="cifar-10-batches-py",
        meta_file="batches.meta",
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        format="cifar",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        downloads={"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
        splits={"train": ("train",), "test": ("test",)},
        file_md5={
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
        image_shape=(3, 32, 32),
        labels={"fine": LabelSet(100, b"fine_labels", b"fine_label_names"),
                "coarse": LabelSet(20, b"coarse_labels", b"coarse_label_names")},
        folder="cifar-100-python",
        meta_file="meta",
    ),
}


def get_info(name: str) -> DatasetInfo:
    """The registry entry of ``name``; an unknown name is a UserError listing the known ones."""
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r}: use one of {', '.join(DATASETS)}")
    return DATASETS[name]


# ---------------------------------------------------------------------------------------------------- file layout
def _folders(info: DatasetInfo, data_dir: str | Path) -> tuple[Path, Path]:
    """(root, folder): root is where downloads go, folder where the files read are.

    A CIFAR ``data_dir`` may be the folder that holds ``cifar-10-batches-py/`` or that folder itself.
    """
    data_dir = Path(data_dir)
    if not info.folder:
        return data_dir, data_dir
    if not (data_dir / info.folder).is_dir() and (data_dir.name == info.folder or (data_dir / info.meta_file).exists()):
        return data_dir.parent, data_dir
    return data_dir, data_dir / info.folder


def _idx_file(folder: Path, name: str) -> Path | None:
    """The IDX file ``name`` in ``folder``, compressed (as downloaded) or not (as gunzip leaves it)."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _missing(info: DatasetInfo, root: Path, folder: Path, file: str) -> UserError:
    download = f"{file}.gz" if info.format == "idx" else next(iter(info.downloads))
    command = DOWNLOAD_COMMAND.format(name=info.name, data_dir=root)
    if info.format == "idx" and folder.is_dir():  # --data-dir data for data/mnist: say where the files are
        inside = sorted(sub for sub in folder.iterdir() if sub.is_dir() and _idx_file(sub, file) is not None)
        inside.sort(key=lambda sub: sub.name != info.name)
        if inside:
            return UserError(f"{info.name}: {file} is not in {folder} but in {inside[0]}: pass --data-dir "
                             f"{inside[0]}")
    return UserError(f"{info.name}: {file} not found in {folder}: download {info.url(download)} "
                     f"with `{command}` or pass the right --data-dir")


# ---------------------------------------------------------------------------------------------------- loading
@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A whole split in memory."""

    images: np.ndarray
    """uint8 (N, C, H, W)."""
    labels: np.ndarray
    """int64 (N,), each in [0, len(classes))."""
    classes: tuple[str, ...]
    """Class names, indexed by label."""

    def __len__(self) -> int:
        return len(self.labels)


def load_dataset(name: str, data_dir: str | Path, split: str = "train", label: str = "fine") -> ArrayDataset:
    """Read one split of a data set from its official files in ``data_dir``.

    Checks shapes, label ranges and that images and labels agree in number, but not checksums (see :func:`verify`).

    Args:
        name: a key of ``DATASETS``.
        data_dir: the folder holding the IDX files, or (CIFAR) the one holding the extracted folder or that folder.
        split: "train" or "test".
        label: "fine", or "coarse" for CIFAR-100's 20 superclasses.

    Raises:
        UserError: unknown name, split or label; a missing file (the message says how to download it); a bad file.
    """
    info = get_info(name)
    if split not in info.splits:
        raise UserError(f"unknown split {split!r} for {name}: use one of {', '.join(info.splits)}")
    if label not in info.labels:
        raise UserError(f"{name} has no {label!r} labels: use one of {', '.join(info.labels)}")
    root, folder = _folders(info, data_dir)
    if info.format == "idx":
        return _load_idx(info, root, folder, split)
    return _load_cifar(info, root, folder, split, info.labels[label])


def _load_idx(info: DatasetInfo, root: Path, folder: Path, split: str) -> ArrayDataset:
    paths = []
    for file in info.splits[split]:
        path = _idx_file(folder, file)
        if path is None:
            raise _missing(info, root, folder, file)
        paths.append(path)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.dtype != np.uint8 or images.shape[1:] != info.image_shape[1:]:
        raise UserError(f"{paths[0]} holds {images.dtype} {images.shape}, not uint8 (N, "
                        f"{', '.join(map(str, info.image_shape[1:]))}) images: is it the right file?")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"{paths[1]} holds labels of shape {labels.shape} for {len(images)} images in {paths[0]}: "
                        "the two files do not belong together, re-download them")
    _check_label_range(labels, info.num_classes, paths[1])
    _refuse_another_sets_file(info, paths[1], info.splits[split][1])
    return ArrayDataset(images[:, None], labels.astype(np.int64), info.classes)


def _refuse_another_sets_file(info: DatasetInfo, path: Path, file: str) -> None:
    """Fashion-MNIST's files have MNIST's names and shapes: a --data-dir pointing at one for the other trained on
    the wrong data without a word. The labels file (a few kB) tells them apart by its official MD5."""
    got = md5_file(path, uncompressed=path.suffix == ".gz")
    for other in DATASETS.values():
        if other is not info and other.format == info.format and other.file_md5.get(file) == got:
            raise UserError(f"{path} is {other.name}'s official {file}, not {info.name}'s: point --data-dir at the "
                            f"{info.name} files (or train --task {other.name})")


def _check_label_range(labels: np.ndarray, num_classes: int, where: Path) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{where} has labels from {labels.min()} to {labels.max()}, outside 0..{num_classes - 1}: "
                        "the file is corrupt or of another data set, re-download it")


def _load_cifar(info: DatasetInfo, root: Path, folder: Path, split: str, labels_of: LabelSet) -> ArrayDataset:
    for file in (*info.splits[split], info.meta_file):
        if not (folder / file).is_file():
            raise _missing(info, root, folder, file)
    pixels = int(np.prod(info.image_shape))
    images, labels = [], []
    for file in info.splits[split]:
        path = folder / file
        batch = read_cifar_pickle(path)
        data, batch_labels = batch.get(b"data"), batch.get(labels_of.key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
            described = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise UserError(f"{path}: b'data' is {described}, not uint8 (N, {pixels}): re-download the data set")
        if batch_labels is None:
            raise UserError(f"{path} has no {labels_of.key!r} entry: is it a {info.name} file? re-download it")
        batch_labels = np.asarray(batch_labels)
        if batch_labels.shape != (len(data),) or not np.issubdtype(batch_labels.dtype, np.integer):
            raise UserError(f"{path} has {batch_labels.shape} {batch_labels.dtype} labels for {len(data)} images: "
                            "the file is corrupt, re-download it")
        _check_label_range(batch_labels, labels_of.num_classes, path)
        images.append(data)
        labels.append(batch_labels.astype(np.int64))
    # Each row is the red plane, then green, then blue, each 32x32 row-major: exactly (C, H, W) order.
    stacked = np.concatenate(images).reshape(-1, *info.image_shape)
    return ArrayDataset(stacked, np.concatenate(labels), _cifar_classes(folder / info.meta_file, labels_of))


def _cifar_classes(path: Path, labels_of: LabelSet) -> tuple[str, ...]:
    names = read_cifar_pickle(path).get(labels_of.names_key)
    if not isinstance(names, list) or len(names) != labels_of.num_classes:
        raise UserError(f"{path} should list {labels_of.num_classes} names under {labels_of.names_key!r}: "
                        "re-download the data set")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


# ---------------------------------------------------------------------------------------------------- checksums
def md5_file(path: str | Path, uncompressed: bool = False) -> str:
    """Hex MD5 of a file's bytes, or of its decompressed bytes when ``uncompressed`` (gzip files)."""
    digest = hashlib.md5()
    opener = gzip_lib.open if uncompressed else open
    with opener(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _idx_problem(info: DatasetInfo, path: Path, file: str) -> str | None:
    """Why the IDX file at ``path`` is not the official one, or None if it is."""
    expected = info.file_md5[file]
    with path.open("rb") as handle:
        compressed = handle.read(2) == GZIP_MAGIC
    if not compressed:
        got = md5_file(path)
        return None if got == expected else f"{path}: MD5 {got} is not the official {expected}"
    if md5_file(path) == info.downloads[f"{file}.gz"]:
        return None
    try:  # a recompressed copy: its gzip bytes differ but its content must not
        got = md5_file(path, uncompressed=True)
    except (OSError, EOFError, zlib.error) as error:
        return f"{path}: not a readable gzip file ({error})"
    return None if got == expected else f"{path}: the uncompressed MD5 {got} is not the official {expected}"


def verify(name: str, data_dir: str | Path) -> list[str]:
    """Check the files of data set ``name`` in ``data_dir`` against their official MD5s.

    IDX files pass when the .gz matches the official download or their uncompressed bytes match (recompressed
    copies); CIFAR pickles are checked as extracted, and a downloaded archive, if still there, as downloaded.

    Returns:
        One line per problem (a file missing or changed); empty when all is well.
    """
    info = get_info(name)
    root, folder = _folders(info, data_dir)
    if not folder.is_dir():
        return [f"{folder} does not exist"]
    problems = []
    for file in info.file_md5:
        if info.format == "idx":
            path = _idx_file(folder, file)
            problem = f"{folder}: {file}(.gz) is missing" if path is None else _idx_problem(info, path, file)
        else:
            path = folder / file
            got = md5_file(path) if path.is_file() else None
            expected = info.file_md5[file]
            problem = (f"{path} is missing" if got is None else
                       None if got == expected else f"{path}: MD5 {got} is not the official {expected}")
        if problem:
            problems.append(problem)
    if info.format == "cifar":
        for archive, expected in info.downloads.items():
            if (root / archive).is_file() and (got := md5_file(root / archive)) != expected:
                problems.append(f"{root / archive}: MD5 {got} is not the official {expected}")
    return problems


# ---------------------------------------------------------------------------------------------------- download
def _fetch(url: str, dest: Path) -> None:
    """Copy ``url`` to the file ``dest`` (replaced by tests, which have no network)."""
    request = urllib.request.Request(url, headers={"User-Agent": "rlkit"})
    with urllib.request.urlopen(request, timeout=60) as response, dest.open("wb") as file:
        shutil.copyfileobj(response, file, 1 << 20)


def _download_file(info: DatasetInfo, download: str, root: Path) -> Path:
    """Fetch ``download`` into ``root``, trying each mirror; only a file with the official MD5 lands there."""
    expected, dest, failures = info.downloads[download], root / download, []
    for mirror in info.mirrors:
        url = mirror + download
        handle, temp = tempfile.mkstemp(dir=root, prefix=f".{download}.", suffix=".part")
        os.close(handle)
        try:
            print(f"downloading {url}", file=sys.stderr)
            _fetch(url, Path(temp))
            got = md5_file(temp)
            if got != expected:
                failures.append(f"{url} gave a file with MD5 {got}, not the official {expected} (deleted)")
                continue
            os.replace(temp, dest)  # atomic: a crash leaves no half file under the real name
            return dest
        except OSError as error:  # URLError and timeouts are OSErrors
            failures.append(f"{url}: {error}")
        finally:
            Path(temp).unlink(missing_ok=True)
    raise UserError(f"could not download {download}: {'; '.join(failures)}: retry later, or fetch it by hand from "
                    f"{info.homepage} into {root}")


def _safe_members(tar: tarfile.TarFile, archive: Path, folder: str) -> list[tarfile.TarInfo]:
    """The archive's members, after refusing any that could write outside ``folder`` (absolute paths, '..',
    links, devices)."""
    members = tar.getmembers()
    for member in members:
        parts = PurePosixPath(member.name).parts
        unsafe = (member.name.startswith(("/", "\\")) or PureWindowsPath(member.name).drive or ".." in parts
                  or not parts or parts[0] != folder or not (member.isfile() or member.isdir()))
        if unsafe:
            raise UserError(f"refusing to extract {archive}: member {member.name!r} is not a plain file under "
                            f"{folder}/ (the official archive has none such): delete it and download again")
    return members


def _extract(archive: Path, root: Path, folder: str) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in _safe_members(tar, archive, folder):
                target = root.joinpath(*PurePosixPath(member.name).parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
                try:
                    with os.fdopen(handle, "wb") as out, tar.extractfile(member) as source:
                        shutil.copyfileobj(source, out, 1 << 20)
                    os.replace(temp, target)
                finally:
                    Path(temp).unlink(missing_ok=True)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise UserError(f"could not extract {archive} ({error}): delete it and download again") from None


def download(name: str, data_dir: str | Path) -> Path:
    """Download data set ``name`` into ``data_dir`` unless valid files are already there; returns ``data_dir``.

    Each download is checked against its official MD5 before it is moved into place; CIFAR archives are then
    extracted (refusing members that would land outside their folder) and the extracted files verified.
    """
    info = get_info(name)
    root, folder = _folders(info, data_dir)
    root.mkdir(parents=True, exist_ok=True)
    if info.format == "idx":
        for file in info.file_md5:
            path = _idx_file(folder, file)
            if path is None or _idx_problem(info, path, file):
                _download_file(info, f"{file}.gz", root)
        return Path(data_dir)
    if all((folder / file).is_file() and md5_file(folder / file) == md5 for file, md5 in info.file_md5.items()):
        return Path(data_dir)
    archive_name, expected = next(iter(info.downloads.items()))
    archive = root / archive_name
    if not (archive.is_file() and md5_file(archive) == expected):
        _download_file(info, archive_name, root)
    _extract(archive, root, info.folder)
    problems = verify(name, root)
    if problems:
        raise UserError(f"{archive} extracted but {problems[0]}: delete {archive} and download again")
    return Path(data_dir)
