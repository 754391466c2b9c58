"""The hostile-input table (issue 17): files a careless or malicious user can hand to train.py, evaluate.py or the
data readers. Each is refused with one line (a UserError: exit 2, no traceback), nothing in it runs, and reading it
costs bounded memory (Python and NumPy allocations by tracemalloc, the process's peak RSS by getrusage)."""

from __future__ import annotations

import gzip
import os
import pickle
import resource
import shutil
import struct
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
import train
from rlkit.data import make_tiny_dataset, read_cifar_pickle, read_idx
from rlkit.data.ucf101 import decode_video, read_video, video_frame_count
from rlkit.errors import UserError

TRACED_LIMIT = 64 << 20
"""Python/NumPy bytes one refusal may allocate at its peak."""
RSS_LIMIT = 256 << 20
"""Growth of the process's peak RSS one refusal may cause (torch allocations are not traced)."""


class RunsACommand:
    """Pickles as ``os.system("touch MARKER")``: if the marker appears, the file ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Allocates:
    """Pickles as ``numpy.ndarray(shape, uint8)``: gigabytes declared by a few hundred bytes."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return np.ndarray, (self.shape, np.dtype("u1"))


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory) -> Path:
    """A small DQN CartPole run with its replay saved: the intact files the cases below corrupt."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "400", "--learning-starts", "100",
                "--eval-episodes", "0", "--save-buffer", "--no-progress", "--run-dir", str(run)])
    return run


def edit_checkpoint(run: Path, change: Callable[[dict], None]) -> None:
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, run / "checkpoint.pt")


# Each case: (name, make(run_copy, tmp_path) -> the action to try, words the one line must hold).
def _pickled_code(run, tmp):
    torch.save({"format": "rlkit", "payload": RunsACommand(tmp / "pwned")}, run / "checkpoint.pt")
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _text_file(run, tmp):
    (run / "checkpoint.pt").write_text("this is not a checkpoint\n")
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _truncated(run, tmp):
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _missing_learner(run, tmp):
    edit_checkpoint(run, lambda c: c.pop("learner"))
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _unknown_config_key(run, tmp):
    edit_checkpoint(run, lambda c: c["config"].update(no_such_field=1))
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _wrapper_builtin(run, tmp):  # --env-wrapper names are saved: a builtin is no wrapper and is never called
    edit_checkpoint(run, lambda c: c["settings"].update(env_wrappers=["os:system"]))
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _wrapper_builtin_with_arguments(run, tmp):  # rl-zoo's {name: {kwargs}} form is checked the same way
    edit_checkpoint(run, lambda c: c["settings"].update(env_wrappers=[{"os:system": {"command": "true"}}]))
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _wrapper_entry_malformed(run, tmp):
    edit_checkpoint(run, lambda c: c["settings"].update(env_wrappers=[{"gymnasium.wrappers:TimeLimit": 5}]))
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _wrapper_not_a_list(run, tmp):
    edit_checkpoint(run, lambda c: c["settings"].update(env_wrappers=7))
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _wrong_weight_shape(run, tmp):
    def change(c):
        net = next(v for k, v in c["learner"].items() if isinstance(v, dict) and "optim" not in k)
        key = next(iter(net))
        net[key] = torch.zeros(3, 3)
    edit_checkpoint(run, change)
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _short_optimizer_state(run, tmp):  # D4: would reach the fused Adam kernel on --resume (tested there in a child
    def change(c):                      # process, tests/test_evaluation.py); here through the shared load check
        for state in c["learner"]["optimizer"]["state"].values():
            state["exp_avg"] = torch.zeros(1)
    edit_checkpoint(run, change)
    return lambda: evaluate.main([str(run), "--episodes", "1"])


def _corrupt_replay(run, tmp):
    (run / "replay.npz").write_bytes(b"PK\x03\x04 garbage, not a zip archive")
    return lambda: train.main(["--resume", str(run), "--total-steps", "800", "--no-progress"])


def _replay_with_code(run, tmp):
    np.savez(run / "replay.npz", frames=np.array([RunsACommand(tmp / "pwned")], dtype=object))
    return lambda: train.main(["--resume", str(run), "--total-steps", "800", "--no-progress"])


def _cifar_code(run, tmp):
    root = make_tiny_dataset("cifar10", tmp / "cifar", train=10, test=10)
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [RunsACommand(tmp / "pwned")]},
                                  protocol=2))
    return lambda: read_cifar_pickle(path)


def _cifar_memory_bomb(run, tmp):  # D16
    path = tmp / "data_batch_1"
    path.write_bytes(pickle.dumps({b"batch_label": b"x", b"data": Allocates((1_500_000, 3072)),
                                   b"labels": Allocates((1_500_000,))}, protocol=2))
    return lambda: read_cifar_pickle(path)


def _idx_header_bomb(run, tmp):
    path = tmp / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 4_000_000_000, 4096, 4096)))
    return lambda: read_idx(path)


def _idx_gzip_bomb(run, tmp):  # D17
    path = tmp / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 100, 28, 28))
        for _ in range(16):
            file.write(bytes(16 << 20))  # 256 MB of zeros behind a header declaring 78 kB
    return lambda: read_idx(path)


def _garbage_gzip(run, tmp):
    path = tmp / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(4096))
    return lambda: read_idx(path)


def _garbage_video(reader):
    def make(run, tmp):
        path = tmp / "v_Garbage_g01_c01.avi"
        path.write_bytes(b"RIFF\x00\x00\x00\x00AVI " + os.urandom(8192))
        return lambda: reader(path)
    return make


CASES = [
    ("checkpoint: pickled os.system", _pickled_code, "unsafe"),
    ("checkpoint: a text file", _text_file, "checkpoint"),
    ("checkpoint: truncated", _truncated, "truncated or corrupt"),
    ("checkpoint: no learner", _missing_learner, "learner"),
    ("checkpoint: unknown config key", _unknown_config_key, "config"),
    ("checkpoint: wrong weight shape", _wrong_weight_shape, "does not fit"),
    ("checkpoint: os.system as an env wrapper", _wrapper_builtin, "not a gym.Wrapper class or a Python function"),
    ("checkpoint: env wrappers not a list", _wrapper_not_a_list, "env_wrappers must be a list"),
    ("checkpoint: os.system with arguments as an env wrapper", _wrapper_builtin_with_arguments,
     "not a gym.Wrapper class or a Python function"),
    ("checkpoint: env wrapper's arguments not a dict", _wrapper_entry_malformed,
     "an env wrapper is an import name or {name: {keyword: value}}"),
    ("checkpoint: optimizer state shorter than its parameter", _short_optimizer_state, "exp_avg"),
    ("replay.npz: not a zip", _corrupt_replay, "replay.npz"),
    ("replay.npz: pickled os.system", _replay_with_code, "replay.npz"),
    ("CIFAR: pickled os.system", _cifar_code, "unsafe pickle"),
    ("CIFAR: ndarray memory bomb", _cifar_memory_bomb, "corrupt"),
    ("IDX: header bomb", _idx_header_bomb, "re-download"),
    ("IDX: gzip bomb", _idx_gzip_bomb, "re-download"),
    ("IDX: garbage gzip", _garbage_gzip, "re-download"),
    ("video: garbage (frame count)", _garbage_video(video_frame_count), "re-download"),
    ("video: garbage (read)", _garbage_video(lambda path: read_video(path, lambda n: np.arange(min(n, 4)))),
     "re-download"),
    ("video: garbage (decode)", _garbage_video(decode_video), "re-download"),
]


def peak_rss() -> int:
    """The process's peak resident set size in bytes (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@pytest.mark.parametrize("name, make, words", CASES,
                         ids=[case[0] for case in CASES])
def test_hostile_input_is_one_line_runs_nothing_and_costs_bounded_memory(dqn_run, tmp_path, name, make, words):
    run = tmp_path / "run"
    shutil.copytree(dqn_run, run)
    action = make(run, tmp_path)
    rss_before = peak_rss()
    tracemalloc.start()
    try:
        with pytest.raises(UserError) as error:
            action()
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(error.value)
    assert "\n" not in message and message.strip() == message and len(message) < 600, message
    assert words in message, message
    assert not (tmp_path / "pwned").exists(), "the file ran code"
    assert traced_peak < TRACED_LIMIT, f"{traced_peak / 2**20:.0f} MiB traced"
    assert peak_rss() - rss_before < RSS_LIMIT, f"peak RSS grew {(peak_rss() - rss_before) / 2**20:.0f} MiB"


def test_the_cases_would_run_code_unguarded(tmp_path):
    """The table's code payload does run when unpickled without a guard: its marker test is meaningful."""
    pickle.loads(pickle.dumps(RunsACommand(tmp_path / "control")))
    assert (tmp_path / "control").exists()
