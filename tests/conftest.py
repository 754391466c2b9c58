"""Shared test set-up."""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests use small networks on a 2-core machine: one intra-op thread is faster than two, and two
    threads per process thrash badly when anything else runs beside the tests."""
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # what --threads auto takes (and subprocesses inherit)
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = env


def _load_benchmark(name: str):
    """``benchmarks/NAME.py`` imported as module ``NAME`` (registered in ``sys.modules``: dataclasses look their
    module up by name)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_benchmark():
    """The function that imports a benchmark script by name: ``load_benchmark("sweep")``."""
    return _load_benchmark
