"""Data set readers (IDX, CIFAR pickles), checksums, download, tiny data sets, and batch transforms."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import pickletools
import shutil
import subprocess
import sys
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import rlkit.data as D
from rlkit.data import __main__ as cli
from rlkit.data import registry
from rlkit.data import transforms as T
from rlkit.errors import UserError, run_command

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


# ---------------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, compress, dtype):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = D.write_idx(tmp_path / "x.idx", array, gzip=compress)
    assert path.read_bytes().startswith(b"\x1f\x8b") == compress
    back = D.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)
    back[0, 0, 0] = 1  # writable, native byte order


def test_idx_header_is_big_endian_and_official(tmp_path):
    path = D.write_idx(tmp_path / "labels", np.array([7, 2, 1], np.uint8), gzip=False)
    assert path.read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 2, 1])
    path = D.write_idx(tmp_path / "ints", np.array([1, 256], np.int32), gzip=False)
    assert path.read_bytes()[8:] == bytes([0, 0, 0, 1, 0, 0, 1, 0])


def test_idx_compression_is_read_from_the_magic_bytes_not_the_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw_named_gz = D.write_idx(tmp_path / "raw.gz", array, gzip=False)
    gz_named_raw = D.write_idx(tmp_path / "compressed-idx1-ubyte", array, gzip=True)
    np.testing.assert_array_equal(D.read_idx(raw_named_gz), array)
    np.testing.assert_array_equal(D.read_idx(gz_named_raw), array)


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_idx_is_a_user_error_naming_the_file(tmp_path, compress):
    path = D.write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8), gzip=compress)
    payload = path.read_bytes()
    path.write_bytes(payload[:-10])
    with pytest.raises(UserError, match="re-download") as error:
        D.read_idx(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_idx_with_extra_bytes_is_corrupt(tmp_path):
    path = D.write_idx(tmp_path / "x", np.zeros(5, np.uint8), gzip=False)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(UserError, match="truncated or corrupt"):
        D.read_idx(path)


def test_idx_bad_magic_and_bad_type_code(tmp_path):
    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(UserError, match="not an IDX file") as error:
        D.read_idx(bad_magic)
    assert str(bad_magic) in str(error.value)
    bad_type = tmp_path / "bad_type"
    bad_type.write_bytes(gzip.compress(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05"))
    with pytest.raises(UserError, match="type code 0x07"):
        D.read_idx(bad_type)
    with pytest.raises(UserError, match="no such file"):
        D.read_idx(tmp_path / "absent")
    with pytest.raises(ValueError, match="IDX cannot hold"):
        D.write_idx(tmp_path / "u16", np.zeros(3, np.uint16))


# ---------------------------------------------------------------------------------------------------- CIFAR
def _dump_protocol2(path: Path, content: object) -> None:
    """What a Python 3 program re-saving a batch at protocol 2 writes (bytes via _codecs.encode)."""
    path.write_bytes(pickle.dumps(content, protocol=2))


def test_cifar10_tiny_files_have_the_official_layout_and_read_back(tmp_path):
    root = D.write_cifar(tmp_path, "cifar10", train=12, test=7, seed=3)
    folder = root / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])
    train = D.load_dataset("cifar10", root, "train")
    assert train.images.shape == (12, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.labels.shape == (12,) and train.labels.dtype == np.int64 and len(train) == 12
    assert train.classes == D.CIFAR10_CLASSES
    test = D.load_dataset("cifar10", folder, "test")  # the extracted folder itself works too
    assert test.images.shape == (7, 3, 32, 32) and set(test.labels) <= set(range(10))
    raw = D.read_cifar_pickle(folder / "data_batch_1")
    assert set(raw) == {b"batch_label", b"data", b"filenames", b"labels"}
    assert raw[b"data"].shape[1] == 3072 and raw[b"batch_label"] == b"training batch 1 of 5"


def test_cifar_files_are_written_as_python2_cpickle_wrote_them(tmp_path):
    """Like the official files: protocol 2, byte strings as STRING opcodes, the NumPy-1 name of the rebuilder."""
    D.write_cifar(tmp_path, "cifar10", train=5, test=2)
    stream = (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(stream)]
    assert ops[0] == ("PROTO", 2)
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    assert not any(name == "GLOBAL" and arg.startswith("_codecs") for name, arg in ops)
    assert ("SHORT_BINSTRING", "data") in ops


def test_cifar_pixel_order_is_channel_major(tmp_path):
    root = D.write_cifar(tmp_path, "cifar10", train=5, test=3)
    data = np.zeros((3, 3072), np.uint8)
    marks = [(1, 0, 2, 5, 11), (1, 1, 30, 0, 22), (2, 2, 31, 31, 33)]  # (n, c, y, x, value)
    for n, c, y, x, value in marks:
        data[n, c * 1024 + y * 32 + x] = value
    batch = {b"batch_label": b"testing batch 1 of 1", b"data": data, b"labels": [0, 1, 2],
             b"filenames": [b"a.png", b"b.png", b"c.png"]}
    _dump_protocol2(root / "cifar-10-batches-py" / "test_batch", batch)
    images = D.load_dataset("cifar10", root, "test").images
    for n, c, y, x, value in marks:
        assert images[n, c, y, x] == value
    assert np.count_nonzero(images) == len(marks)


def test_cifar100_fine_and_coarse_labels_and_names(tmp_path):
    root = D.write_cifar(tmp_path, "cifar100", train=30, test=4)
    fine = D.load_dataset("cifar100", root, "train", "fine")
    coarse = D.load_dataset("cifar100", root, "train", "coarse")
    assert len(fine.classes) == 100 and len(coarse.classes) == 20
    assert fine.classes[7] == "fine_07" and coarse.classes[3] == "coarse_03"
    np.testing.assert_array_equal(fine.images, coarse.images)
    np.testing.assert_array_equal(coarse.labels, fine.labels // 5)
    batch = {b"batch_label": b"testing batch 1 of 1", b"data": np.zeros((3, 3072), np.uint8),
             b"fine_labels": [99, 0, 42], b"coarse_labels": [19, 4, 8], b"filenames": [b"a", b"b", b"c"]}
    _dump_protocol2(root / "cifar-100-python" / "test", batch)
    assert list(D.load_dataset("cifar100", root, "test", "fine").labels) == [99, 0, 42]
    assert list(D.load_dataset("cifar100", root, "test", "coarse").labels) == [19, 4, 8]
    with pytest.raises(UserError, match="no 'coarse' labels"):
        D.load_dataset("cifar10", root, "test", "coarse")


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code_and_never_runs_it(tmp_path):
    root = D.write_cifar(tmp_path / "data", "cifar10", train=5, test=2)
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_RunsACommand(marker)]}
    _dump_protocol2(root / "cifar-10-batches-py" / "test_batch", evil)
    with pytest.raises(UserError, match="unsafe pickle") as error:
        D.load_dataset("cifar10", root, "test")
    assert str(error.value).startswith(f"refusing to load {root / 'cifar-10-batches-py' / 'test_batch'}: unsafe")
    assert "os.system" in str(error.value) or "posix.system" in str(error.value)
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(_RunsACommand(tmp_path / "control"))) == 0  # the payload does run unguarded
    assert (tmp_path / "control").exists()


def test_restricted_unpickler_allows_codecs_only_for_latin1(tmp_path):
    path = tmp_path / "batch"
    # _codecs.encode("x", "rot13") would be a call outside what bytes at protocol 2 need
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(UserError, match="corrupt"):
        D.read_cifar_pickle(path)


def test_cifar_structure_problems_are_user_errors(tmp_path):
    root = D.write_cifar(tmp_path, "cifar10", train=5, test=2)
    test_batch = root / "cifar-10-batches-py" / "test_batch"
    _dump_protocol2(test_batch, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(UserError, match="outside 0..9"):
        D.load_dataset("cifar10", root, "test")
    _dump_protocol2(test_batch, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    with pytest.raises(UserError, match="labels for 2 images"):
        D.load_dataset("cifar10", root, "test")
    _dump_protocol2(test_batch, {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    with pytest.raises(UserError, match="not uint8"):
        D.load_dataset("cifar10", root, "test")
    test_batch.write_bytes(test_batch.read_bytes()[:40])
    with pytest.raises(UserError, match="truncated or corrupt"):
        D.load_dataset("cifar10", root, "test")


# ---------------------------------------------------------------------------------------------------- load errors
@pytest.mark.parametrize("name, url", [
    ("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"),
    ("fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz"),
    ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    ("cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
])
def test_missing_data_set_says_where_it_looked_and_how_to_download(tmp_path, name, url):
    where = tmp_path / "nowhere"
    with pytest.raises(UserError) as error:
        D.load_dataset(name, where, "train")
    message = str(error.value)
    assert "\n" not in message and str(where) in message and url in message
    assert f"python -m rlkit.data download {name} --data-dir {where}" in message


def test_unknown_names_list_the_known_ones(tmp_path):
    with pytest.raises(UserError, match="mnist, fashion-mnist, cifar10, cifar100"):
        D.load_dataset("svhn", tmp_path)
    with pytest.raises(UserError, match="train, test"):
        D.load_dataset("mnist", tmp_path, "valid")


def test_idx_structure_problems_are_user_errors(tmp_path):
    D.make_tiny_dataset("mnist", tmp_path, train=20, test=10)
    D.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10, 10, np.uint8))
    with pytest.raises(UserError, match="outside 0..9"):
        D.load_dataset("mnist", tmp_path, "test")
    D.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(UserError, match="do not belong together"):
        D.load_dataset("mnist", tmp_path, "test")
    D.write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(UserError, match="right file"):
        D.load_dataset("mnist", tmp_path, "test")


@pytest.mark.parametrize("name", list(D.DATASETS))
def test_tiny_data_sets_load_and_are_learnable(tmp_path, name):
    info = D.DATASETS[name]
    root = D.make_tiny_dataset(name, tmp_path, train=200, test=100, seed=1)
    train, test = D.load_dataset(name, root, "train"), D.load_dataset(name, root, "test")
    assert train.images.shape == (200, *info.image_shape) and test.images.shape == (100, *info.image_shape)
    assert len(train.classes) == info.num_classes
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64 and test.labels.dtype == np.int64
    # nearest class mean on the training images classifies the test images far above chance
    x_train, x_test = train.images.reshape(200, -1) / 255.0, test.images.reshape(100, -1) / 255.0
    present = np.unique(train.labels)
    means = np.stack([x_train[train.labels == k].mean(0) for k in present])
    predicted = present[((x_test[:, None] - means[None]) ** 2).sum(-1).argmin(1)]
    seen = np.isin(test.labels, present)
    assert (predicted[seen] == test.labels[seen]).mean() > 0.9


def test_uncompressed_idx_files_are_found_and_verified_too(tmp_path, monkeypatch):
    D.make_tiny_dataset("fashion-mnist", tmp_path, train=10, test=10)
    _trust_files_as_official(monkeypatch, "fashion-mnist", tmp_path)
    for gz in tmp_path.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    assert D.load_dataset("fashion-mnist", tmp_path, "test").images.shape == (10, 1, 28, 28)
    assert D.verify("fashion-mnist", tmp_path) == []
    labels = tmp_path / "train-labels-idx1-ubyte"
    content = labels.read_bytes()
    labels.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    problems = D.verify("fashion-mnist", tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"{labels}: MD5")


# ---------------------------------------------------------------------------------------------------- checksums
def _trust_files_as_official(monkeypatch, name: str, root: Path) -> None:
    """Point the registry's MD5s at the tiny files in ``root`` so verify/download can be tested offline."""
    info = D.DATASETS[name]
    if info.format == "idx":
        file_md5 = {f: D.md5_file(root / f"{f}.gz", uncompressed=True) for f in info.file_md5}
        downloads = {f"{f}.gz": D.md5_file(root / f"{f}.gz") for f in info.file_md5}
    else:
        file_md5 = {f: D.md5_file(root / info.folder / f) for f in info.file_md5}
        downloads = dict(info.downloads)
    monkeypatch.setitem(D.DATASETS, name, dataclasses.replace(info, file_md5=file_md5, downloads=downloads))


def test_verify_passes_matching_files_and_reports_changed_ones(tmp_path, monkeypatch):
    root = D.make_tiny_dataset("mnist", tmp_path, train=20, test=10)
    assert len(D.verify("mnist", root)) == 4  # tiny files are not the official ones
    _trust_files_as_official(monkeypatch, "mnist", root)
    assert D.verify("mnist", root) == []
    # recompressed (other gzip bytes, same content) still passes, as the copies in ../shared/data do
    labels = root / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes()), compresslevel=1, mtime=123))
    assert D.verify("mnist", root) == []
    images = D.read_idx(root / "t10k-images-idx3-ubyte.gz")
    images[0, 0, 0] ^= 1
    D.write_idx(root / "t10k-images-idx3-ubyte.gz", images)
    problems = D.verify("mnist", root)
    assert len(problems) == 1 and "t10k-images-idx3-ubyte.gz" in problems[0] and "MD5" in problems[0]
    (root / "train-labels-idx1-ubyte.gz").unlink()
    assert any("train-labels-idx1-ubyte" in p and "missing" in p for p in D.verify("mnist", root))
    assert D.verify("mnist", tmp_path / "absent") == [f"{tmp_path / 'absent'} does not exist"]


def test_verify_cifar_checks_the_extracted_files(tmp_path, monkeypatch):
    root = D.write_cifar(tmp_path, "cifar100", train=10, test=5)
    _trust_files_as_official(monkeypatch, "cifar100", root)
    assert D.verify("cifar100", root) == [] and D.verify("cifar100", root / "cifar-100-python") == []
    meta = root / "cifar-100-python" / "meta"
    meta.write_bytes(meta.read_bytes() + b"x")
    problems = D.verify("cifar100", root)
    assert len(problems) == 1 and problems[0].startswith(f"{meta}: MD5 {D.md5_file(meta)}")
    (root / "cifar-100-python" / "test").unlink()
    assert any("test is missing" in p for p in D.verify("cifar100", root))
    (root / "cifar-100-python.tar.gz").write_bytes(b"not the archive")
    assert any("cifar-100-python.tar.gz: MD5" in p for p in D.verify("cifar100", root))


# ---------------------------------------------------------------------------------------------------- download
class _FakeServer:
    """Stands in for ``_fetch``: serves files from a folder by the URL's last part, and records the URLs."""

    def __init__(self, folder: Path, broken_hosts: tuple[str, ...] = ()):
        self.folder, self.broken_hosts, self.urls = folder, broken_hosts, []

    def __call__(self, url: str, dest: Path) -> None:
        self.urls.append(url)
        if any(host in url for host in self.broken_hosts):
            raise urllib.error.URLError("connection refused")
        shutil.copyfile(self.folder / url.rsplit("/", 1)[1], dest)


def test_download_idx_fetches_checks_and_skips_valid_files(tmp_path, monkeypatch):
    server = D.make_tiny_dataset("mnist", tmp_path / "server", train=20, test=10)
    _trust_files_as_official(monkeypatch, "mnist", server)
    fake = _FakeServer(server, broken_hosts=("ossci-datasets",))  # the first mirror is down
    monkeypatch.setattr(registry, "_fetch", fake)
    target = tmp_path / "data" / "mnist"
    assert D.download("mnist", target) == target
    assert len(fake.urls) == 8 and all("yann.lecun.com" in u for u in fake.urls[1::2])
    assert D.verify("mnist", target) == [] and len(D.load_dataset("mnist", target, "test")) == 10
    fake.urls.clear()
    D.download("mnist", target)
    assert fake.urls == []  # everything present and valid
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{f}.gz" for f in D.DATASETS["mnist"].file_md5)


def test_download_with_a_wrong_md5_deletes_the_file_and_fails(tmp_path, monkeypatch):
    server = D.make_tiny_dataset("fashion-mnist", tmp_path / "server", train=20, test=10)
    _trust_files_as_official(monkeypatch, "fashion-mnist", server)
    (server / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>moved</html>")  # what a broken mirror sends
    monkeypatch.setattr(registry, "_fetch", _FakeServer(server))
    target = tmp_path / "data"
    with pytest.raises(UserError, match="MD5 .* not the official") as error:
        D.download("fashion-mnist", target)
    assert "t10k-images-idx3-ubyte.gz" in str(error.value)
    assert not (target / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in target.iterdir() if p.name.endswith(".part")]


def _cifar_archive(tmp_path: Path, kind: str, extra: tarfile.TarInfo | None = None) -> Path:
    source = D.write_cifar(tmp_path / "source", kind, train=10, test=5)
    server = tmp_path / "server"
    server.mkdir()
    archive = server / next(iter(D.DATASETS[kind].downloads))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / D.DATASETS[kind].folder, arcname=D.DATASETS[kind].folder)
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size))
    return source


def test_download_cifar_extracts_the_checked_archive(tmp_path, monkeypatch):
    source = _cifar_archive(tmp_path, "cifar10")
    _trust_files_as_official(monkeypatch, "cifar10", source)
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    info = D.DATASETS["cifar10"]
    monkeypatch.setitem(D.DATASETS, "cifar10", dataclasses.replace(
        info, downloads={archive.name: D.md5_file(archive)}))
    fake = _FakeServer(tmp_path / "server")
    monkeypatch.setattr(registry, "_fetch", fake)
    target = tmp_path / "data"
    D.download("cifar10", target)
    assert fake.urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert D.verify("cifar10", target) == []
    np.testing.assert_array_equal(D.load_dataset("cifar10", target, "train").images,
                                  D.load_dataset("cifar10", source, "train").images)
    (target / archive.name).unlink()
    D.download("cifar10", target)  # the extracted files are valid: nothing to fetch
    assert len(fake.urls) == 1 and not (target / archive.name).exists()
    D.download("cifar10", target / "cifar-10-batches-py")  # the folder itself names the same place
    assert len(fake.urls) == 1
    shutil.copy(tmp_path / "server" / archive.name, target)
    (target / "cifar-10-batches-py" / "data_batch_3").unlink()
    D.download("cifar10", target)  # a valid archive is extracted again without fetching it
    assert len(fake.urls) == 1 and D.verify("cifar10", target) == []
    monkeypatch.setitem(D.DATASETS, "cifar10", dataclasses.replace(info, downloads={archive.name: "0" * 32}))
    with pytest.raises(UserError, match="deleted"):
        D.download("cifar10", tmp_path / "other")
    assert not (tmp_path / "other" / archive.name).exists()


def test_download_refuses_archive_members_outside_the_folder(tmp_path, monkeypatch):
    escape = tarfile.TarInfo("cifar-100-python/../../escaped")
    escape.size = 3
    _cifar_archive(tmp_path, "cifar100", extra=escape)
    archive = tmp_path / "server" / "cifar-100-python.tar.gz"
    monkeypatch.setitem(D.DATASETS, "cifar100", dataclasses.replace(
        D.DATASETS["cifar100"], downloads={archive.name: D.md5_file(archive)}))
    monkeypatch.setattr(registry, "_fetch", _FakeServer(tmp_path / "server"))
    with pytest.raises(UserError, match="refusing to extract"):
        D.download("cifar100", tmp_path / "data" / "deep")
    assert not (tmp_path / "data" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert not (tmp_path / "data" / "deep" / "cifar-100-python").exists()  # checked before anything is written


def test_command_line_verify_and_help(tmp_path, monkeypatch, capsys):
    root = D.make_tiny_dataset("mnist", tmp_path, train=20, test=10)
    with pytest.raises(SystemExit) as exit_info:
        run_command(lambda: cli.main(["verify", "mnist", "--data-dir", str(root)]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "download mnist" in err
    _trust_files_as_official(monkeypatch, "mnist", root)
    cli.main(["verify", "mnist", "--data-dir", str(root)])
    assert "matches its official MD5" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["download", "--help"])
    assert exit_info.value.code == 0 and "--data-dir" in capsys.readouterr().out


def test_command_line_makes_tiny_data_sets(tmp_path, capsys):
    cli.main(["make-tiny", "fashion-mnist", "--out", str(tmp_path / "fashion"), "--train", "30", "--test", "10"])
    assert "tiny fashion-mnist" in capsys.readouterr().out
    assert len(D.load_dataset("fashion-mnist", tmp_path / "fashion", "test")) == 10
    cli.main(["make-tiny", "ucf101", "--out", str(tmp_path / "ucf"), "--classes", "2", "--videos-per-class", "3",
              "--frames", "4", "--size", "16"])
    assert len(D.read_split(tmp_path / "ucf", "train")) + len(D.read_split(tmp_path / "ucf", "test")) == 6
    cli.main(["extract-frames", "--data-dir", str(tmp_path / "ucf"), "--out", str(tmp_path / "frames")])
    assert "extracted 6 videos" in capsys.readouterr().out
    assert len(D.list_frame_files(tmp_path / "frames" / "Scene01" / "v_Scene01_g01_c01")) == 4


def test_python_dash_m_runs_the_command_line():
    result = subprocess.run([sys.executable, "-m", "rlkit.data", "--help"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], check=True)
    for command in ("download", "verify", "extract-frames", "extract-flow", "extract-features", "make-tiny"):
        assert command in result.stdout


def test_another_sets_official_files_are_refused_by_their_labels_md5(tmp_path, monkeypatch):
    """Fashion-MNIST's files have MNIST's names and shapes: --task mnist on a Fashion-MNIST folder trained on
    clothes as digits, silently. Here the tiny fashion-mnist files stand in for the official ones."""
    root = D.make_tiny_dataset("fashion-mnist", tmp_path / "fashion-mnist", train=20, test=10)
    assert D.load_dataset("mnist", root, "test").images.shape == (10, 1, 28, 28)  # unknown files: read as given
    _trust_files_as_official(monkeypatch, "fashion-mnist", root)
    for split, labels in (("train", "train-labels-idx1-ubyte"), ("test", "t10k-labels-idx1-ubyte")):
        with pytest.raises(UserError, match=f"{labels}.gz is fashion-mnist's official {labels}, not mnist's: point "
                                            "--data-dir at the mnist files \\(or train --task fashion-mnist\\)"):
            D.load_dataset("mnist", root, split)
    assert len(D.load_dataset("fashion-mnist", root, "test").images) == 10


def test_a_data_dir_above_the_sets_folder_names_the_folder(tmp_path):
    D.make_tiny_dataset("mnist", tmp_path / "mnist", train=20, test=10)
    D.make_tiny_dataset("fashion-mnist", tmp_path / "fashion-mnist", train=20, test=10)
    for name in ("mnist", "fashion-mnist"):  # the folder named as the set first, though both hold such files
        with pytest.raises(UserError, match=f"is not in {tmp_path} but in {tmp_path / name}: pass --data-dir "
                                            f"{tmp_path / name}$"):
            D.load_dataset(name, tmp_path, "train")


# ---------------------------------------------------------------------------------------------------- real data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_data_test_split_and_checksums(name):
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"no real data at {folder} (only on machines with ../shared/data)")
    test = D.load_dataset(name, folder, "test")
    assert test.images.shape == (10_000, 1, 28, 28) and test.images.dtype == np.uint8
    assert np.bincount(test.labels).tolist() == ([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
                                                 if name == "mnist" else [1000] * 10)
    assert D.verify(name, folder) == []
    other = "fashion-mnist" if name == "mnist" else "mnist"
    with pytest.raises(UserError, match=f"is {name}'s official t10k-labels-idx1-ubyte, not {other}'s"):
        D.load_dataset(other, folder, "test")


# ---------------------------------------------------------------------------------------------------- transforms
def _batch(b=6, c=3, h=8, w=10, seed=0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)) + 0.1  # no zeros in the image


def test_to_float():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    assert torch.allclose(T.to_float(x), torch.tensor([0.0, 0.2, 1.0]).view(1, 1, 1, 3))
    assert T.to_float(np.zeros((1, 1, 2, 2), np.uint8)).dtype == torch.float32
    with pytest.raises(TypeError):
        T.to_float(torch.zeros(1, 1, 2, 2))


def test_random_crop_takes_a_window_of_the_zero_padded_image():
    x, pad = _batch(b=16), 3
    out = T.RandomCrop((8, 10), padding=pad)(x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    offsets = []
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 10])]
        assert len(matches) == 1
        offsets.append(matches[0])
    rows, cols = zip(*offsets)  # independent offsets per image, and per axis
    assert len(set(rows)) > 1 and len(set(cols)) > 1 and rows != cols
    small = T.RandomCrop(4)(x, generator=torch.Generator().manual_seed(2))
    assert small.shape == (16, 3, 4, 4)


def test_random_transforms_are_reproducible_with_a_seed():
    x = _batch(b=16)
    chain = T.Compose([T.RandomCrop(8, padding=2), T.RandomHorizontalFlip()])
    a = chain(x, generator=torch.Generator().manual_seed(5))
    b = chain(x, generator=torch.Generator().manual_seed(5))
    c = chain(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_mirrors_exactly_the_chosen_images():
    x = _batch(b=32)
    out = T.RandomHorizontalFlip(p=0.5)(x, generator=torch.Generator().manual_seed(3))
    chosen = torch.rand(32, generator=torch.Generator().manual_seed(3)) < 0.5
    assert 0 < chosen.sum() < 32
    for i in range(32):
        assert torch.equal(out[i], x[i].flip(-1) if chosen[i] else x[i])
    assert torch.equal(T.RandomHorizontalFlip(p=0.0)(x), x)
    assert torch.equal(T.RandomHorizontalFlip(p=1.0)(x), x.flip(-1))


def test_normalize_math():
    x = _batch(c=2)
    out = T.Normalize((0.5, 0.25), (2.0, 0.5))(x)
    assert torch.allclose(out[:, 0], (x[:, 0] - 0.5) / 2.0) and torch.allclose(out[:, 1], (x[:, 1] - 0.25) / 0.5)
    gray = T.Normalize.for_dataset("mnist")(torch.full((1, 1, 2, 2), 0.1307))
    assert torch.allclose(gray, torch.zeros(1, 1, 2, 2), atol=1e-6)
    with pytest.raises(ValueError, match="channel"):
        T.Normalize((0.5,), (1.0,))(x)
    assert set(T.STATS) >= set(D.DATASETS)


def test_pad_centres_the_image():
    x = _batch(b=2, c=1, h=28, w=27)
    out = T.Pad(32)(x)
    assert out.shape == (2, 1, 32, 32)
    assert torch.equal(out[:, :, 2:30, 2:29], x)
    assert out.sum() == pytest.approx(x.sum().item(), rel=1e-6)  # zeros elsewhere
    with pytest.raises(ValueError):
        T.Pad(16)(x)


def test_resize_and_compose_from_uint8():
    x = torch.full((2, 3, 32, 32), 51, dtype=torch.uint8)
    out = T.Compose([T.to_float, T.Resize(224)])(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 224, 224) and torch.allclose(out, torch.full_like(out, 0.2))
    with pytest.raises(TypeError, match="to_float"):
        T.Resize(224)(x)


# ---------------------------------------------------------------------------------------------------- one library
# The same transforms serve image batches (B, C, H, W) and clips (B, T, C, H, W): values worked out by hand.
def _clip_of(*frames: torch.Tensor) -> torch.Tensor:
    """Frames (B, C, H, W) -> a batch of clips (B, T, C, H, W)."""
    return torch.stack(frames, dim=1)


def test_flip_of_a_known_image_and_clip():
    image = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).view(1, 1, 2, 3)
    mirrored = torch.tensor([[3.0, 2.0, 1.0], [6.0, 5.0, 4.0]]).view(1, 1, 2, 3)
    flip = T.RandomHorizontalFlip(p=1.0)
    assert torch.equal(flip(image), mirrored)
    assert torch.equal(flip(_clip_of(image, image + 10)), _clip_of(mirrored, mirrored + 10))  # every frame
    assert torch.equal(T.RandomHorizontalFlip(p=0.0)(_clip_of(image, image)), _clip_of(image, image))
    with pytest.raises(ValueError, match="batch"):
        flip(image[0])  # one image is not a batch


def test_resize_of_constant_and_known_rows():
    constant = torch.full((2, 3, 4, 6), 0.25)
    assert torch.allclose(T.Resize((2, 3))(constant), torch.full((2, 3, 2, 3), 0.25))
    frames = [torch.full((1, 1, 4, 6), k / 4) for k in range(3)]
    out = T.Resize((2, 3))(_clip_of(*frames))
    assert out.shape == (1, 3, 1, 2, 3)
    for k in range(3):
        assert torch.allclose(out[:, k], torch.full((1, 1, 2, 3), k / 4))
    # Growing [0, 1] to 4 columns samples at -1/4, 1/4, 3/4, 5/4 (clamped at the edges).
    grown = torch.tensor([0.0, 0.25, 0.75, 1.0])
    row = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert torch.allclose(T.Resize((1, 4))(row).flatten(), grown)
    assert torch.allclose(T.Resize((1, 4))(_clip_of(row, row)).flatten(), torch.cat([grown, grown]))
    # Shrinking [0, 1, 2, 3] to 2 with antialiasing: a triangle twice as wide, weights 3/4, 3/4, 1/4 over the
    # nearest three pixels, so (0.75 * 1 + 0.25 * 2) / 1.75 and (0.25 * 1 + 0.75 * 2 + 0.75 * 3) / 1.75.
    four = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 1, 4)
    assert torch.allclose(T.Resize((1, 2))(four).flatten(), torch.tensor([5 / 7, 16 / 7]))
    assert torch.allclose(T.Resize((1, 2), antialias=False)(four).flatten(), torch.tensor([0.5, 2.5]))


def test_normalize_of_known_values_in_every_layout():
    normalize = T.Normalize((0.5, 0.25), (0.25, 0.5))
    image = torch.tensor([0.5, 1.0]).view(1, 2, 1, 1)  # channel 0: (0.5 - 0.5) / 0.25, channel 1: (1 - 0.25) / 0.5
    expected = torch.tensor([0.0, 1.5]).view(1, 2, 1, 1)
    assert torch.allclose(normalize(image), expected)
    assert torch.allclose(normalize(_clip_of(image, image, image)), _clip_of(expected, expected, expected))
    channels_first = _clip_of(image, image, image).transpose(1, 2)  # (B, C, T, H, W)
    out = T.Normalize((0.5, 0.25), (0.25, 0.5), channel_dim=-4)(channels_first)
    assert torch.allclose(out, _clip_of(expected, expected, expected).transpose(1, 2))
    with pytest.raises(ValueError, match="channel"):
        normalize(channels_first)  # 3 frames where the 2 channels should be


def test_pad_and_crop_clips_frame_by_frame():
    ones = torch.ones(1, 1, 2, 2)
    padded = T.Pad(4)(_clip_of(ones, 2 * ones))
    assert padded.shape == (1, 2, 1, 4, 4)
    assert torch.equal(padded[0, 1, 0], torch.tensor([[0.0, 0, 0, 0], [0, 2, 2, 0], [0, 2, 2, 0], [0, 0, 0, 0]]))
    image = torch.arange(9.0).view(1, 1, 3, 3)
    corners = {T.RandomCrop(2)(image, torch.Generator().manual_seed(s))[0, 0, 0, 0].item() for s in range(20)}
    assert corners == {0.0, 1.0, 3.0, 4.0}  # the top-left value of each of the four 2x2 windows


@pytest.mark.parametrize("transform", [T.RandomCrop(6, padding=2), T.RandomHorizontalFlip(),
                                       T.RandomResizedCrop(5), T.BrightnessJitter()], ids=repr)
def test_random_transforms_draw_per_sample_whatever_the_layout(transform):
    first, second = _batch(b=12, h=8, w=10, seed=1) * 0.5, _batch(b=12, h=8, w=10, seed=2) * 0.5
    clips = transform(_clip_of(first, second), torch.Generator().manual_seed(7))
    # Each frame of a clip gets what the same image would get: the draws depend on the sample, not on the frame.
    frames = [transform(x, torch.Generator().manual_seed(7)) for x in (first, second)]
    torch.testing.assert_close(clips, _clip_of(*frames), rtol=0, atol=1e-6)
    assert not torch.equal(frames[0], first[:, :, :frames[0].shape[-2], :frames[0].shape[-1]])  # it did something


# ---------------------------------------------------------------------------------------------------- memory bombs
class _Allocates:
    """Pickles as a call that allocates ``shape`` without any data in the file (the issue's 286-byte CIFAR bomb)."""

    def __init__(self, call, shape, dtype="u1"):
        self.call, self.shape, self.dtype = call, shape, dtype

    def __reduce__(self):
        if self.call == "ndarray":
            return np.ndarray, (self.shape, np.dtype(self.dtype))
        return D.cifar.np_reconstruct, (np.ndarray, self.shape, b"b")


def peak_allocation(function) -> int:
    """Bytes allocated at the peak (Python and NumPy allocations) while ``function`` runs."""
    import tracemalloc

    tracemalloc.start()
    try:
        function()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("call", ["ndarray", "_reconstruct"])
def test_cifar_pickle_cannot_allocate_what_it_does_not_hold(tmp_path, call):
    """D16: numpy.ndarray called as a constructor (or the rebuilder with a non-empty shape) is refused: a few hundred
    bytes can no longer declare gigabytes. Memory stays bounded (the old reader allocated the 600 MB declared)."""
    path = tmp_path / "data_batch_1"
    n = 200_000
    _dump_protocol2(path, {b"batch_label": b"x", b"data": _Allocates(call, (n, 3072)),
                           b"labels": _Allocates(call, (n,), "i8")})
    assert path.stat().st_size < 400

    def read():
        with pytest.raises(UserError, match="corrupt") as error:
            D.read_cifar_pickle(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)

    assert peak_allocation(read) < 16 << 20


def test_idx_gzip_bomb_is_decompressed_only_as_far_as_its_header_says(tmp_path):
    """D17: a gzip file whose header declares 10 small images but which inflates to 128 MB is refused after
    reading what the header declares (plus a byte); the old reader inflated all of it first."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
        for _ in range(8):
            file.write(bytes(16 << 20))
    assert path.stat().st_size < 2 << 20

    def read():
        with pytest.raises(UserError, match="truncated or corrupt") as error:
            D.read_idx(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)

    assert peak_allocation(read) < 8 << 20


def test_idx_header_promising_more_than_the_file_can_hold_is_refused_before_reading(tmp_path):
    """D17: a header declaring more than deflate could inflate the file to is refused at once."""
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + (60_000_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2))
    with pytest.raises(UserError, match="more than its"):
        D.read_idx(path)
