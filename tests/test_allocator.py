"""rlkit.runtime.keep_freed_memory: freed tensor memory stays in the process for the next update (glibc)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates, touches and frees 8 MiB through libc, after calling keep_freed_memory() or not, and prints the call's
# answer and how much of the block the process still holds (kB of resident memory gained).
PROBE = textwrap.dedent("""
    import ctypes, sys
    from rlkit.runtime import keep_freed_memory
    tuned = keep_freed_memory() if sys.argv[1] == "tune" else None
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def resident_kb():
        return int(open("/proc/self/statm").read().split()[1]) * 4
    before = resident_kb()
    block = libc.malloc(8 << 20)
    ctypes.memset(block, 1, 8 << 20)
    libc.free(block)
    print(tuned, resident_kb() - before)
""")


def probe(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "RLKIT_KEEP_FREED_MEMORY"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not GLIBC, reason="the tuning is glibc's mallopt")
def test_freed_blocks_stay_in_the_heap_after_tuning_and_go_back_without_it():
    tuned, kept = probe("tune")
    untuned, returned = probe("none")
    assert tuned == "True" and untuned == "None"
    assert kept >= 7 * 1024  # the 8 MiB block is still resident, ready for the next allocation of its size
    assert returned < 1024  # glibc's default: a block this large is its own mapping, unmapped on free


@pytest.mark.parametrize("env", [{"RLKIT_KEEP_FREED_MEMORY": "0"}, {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"MALLOC_MMAP_THRESHOLD_": "131072"}])
def test_the_users_own_allocator_settings_are_left_alone(env):
    tuned, returned = probe("tune", **env)
    assert tuned == "False"
    if GLIBC and "MALLOC_TRIM_THRESHOLD_" not in env:
        assert returned < 1024


def test_off_glibc_it_does_nothing(monkeypatch):
    from rlkit import runtime

    monkeypatch.setattr(runtime, "_allocator_tuned", None)
    monkeypatch.setattr(runtime.platform, "libc_ver", lambda: ("", ""))
    assert runtime.keep_freed_memory() is False
    monkeypatch.setattr(runtime, "_allocator_tuned", None)  # the process's real answer is decided again later


@pytest.mark.parametrize("kind", sorted(__import__("rlkit.jobs", fromlist=["JOBS"]).JOBS))
def test_every_registered_job_starts_its_process_through_prepare_process(kind):
    """Each job's module sets threads and the allocator with the one shared call, never by halves."""
    import inspect

    from rlkit.jobs import JOBS

    source = inspect.getsource(sys.modules[type(JOBS[kind]).__module__])
    assert source.count("prepare_process(") == 1
    assert "set_threads(" not in source and "keep_freed_memory(" not in source


def test_prepare_process_sets_the_threads_and_keeps_freed_memory(monkeypatch):
    from rlkit import runtime

    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append("tuned") or True)
    monkeypatch.setattr(runtime.torch, "set_num_threads", lambda n: calls.append(n))
    assert runtime.prepare_process(3, large_convolutions=False) == 3
    assert calls == [3, "tuned"]


def test_a_training_run_tunes_the_allocator_before_it_builds_the_agent(monkeypatch, tmp_path):
    from rlkit import runtime
    from rlkit.cli import train
    from rlkit.jobs import agent as agent_job

    calls = []
    real_build_agent = agent_job.build_agent
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append("tuned") or True)
    monkeypatch.setattr(agent_job, "build_agent", lambda *a, **k: calls.append("built") or real_build_agent(*a, **k))
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "64", "--eval-episodes", "1",
                "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert calls[:2] == ["tuned", "built"]
