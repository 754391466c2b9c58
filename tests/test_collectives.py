"""The ring all-reduce (rlkit.collectives) on 2, 3 and 4 gloo processes against dist.all_reduce and sums computed
here from the same inputs, and ``--allreduce ring`` through train.py's command line: the same training steps as
the builtin all-reduce, with the gradients really sent around the ring."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rlkit.collectives import chunk_bounds, ring_all_reduce

WORLDS = (2, 3, 4)
TIMEOUT = timedelta(seconds=60)
"""A message that never comes fails the test instead of hanging it."""


def _inputs(rank: int, n: int) -> dict[str, torch.Tensor]:
    """What process ``rank`` of ``n`` reduces: a tensor per case, the same on every call."""
    g = torch.Generator().manual_seed(1_000 * n + rank)
    cases = {}
    for size in sorted({1, n - 1, n, 1000, 1001}):  # fewer elements than processes, none divisible, divisible
        for dtype in (torch.float32, torch.float64):
            cases[f"{size}-{dtype}"] = torch.randn(size, generator=g, dtype=dtype)
    cases["empty"] = torch.zeros(0)
    cases["2d"] = torch.randn(7, 13, generator=g)  # 91 elements: unequal chunks for 2, 3 and 4 processes
    cases["transposed"] = torch.randn(13, 7, generator=g).t()  # not contiguous: reduced through a copy
    cases["bfloat16"] = torch.randint(-8, 9, (1001,), generator=g).to(torch.bfloat16)  # small whole numbers: exact
    return cases


def _reduce_worker(rank: int, n: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=n, timeout=TIMEOUT)
    from rlkit.distributed import exit_without_teardown, use_allreduce
    from rlkit.errors import UserError

    results: dict[str, object] = {}
    for name, x in _inputs(rank, n).items():
        ring, builtin = x.clone(), x.clone()
        returned = ring_all_reduce(ring)
        dist.all_reduce(builtin)
        results[name] = {"ring": ring.contiguous(), "builtin": builtin.contiguous(), "in_place": returned is ring,
                         "contiguous": ring.is_contiguous() == x.is_contiguous()}
    try:  # processes that disagree get an error, not a ring waiting forever for a peer inside dist.all_reduce
        use_allreduce("ring" if rank == 0 else "builtin")
        results["disagree"] = ""
    except UserError as error:
        results["disagree"] = str(error)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    exit_without_teardown()


@pytest.mark.parametrize("n", WORLDS)
def test_ring_all_reduce_equals_all_reduce_and_the_sum_of_the_inputs(n, tmp_path):
    mp.spawn(_reduce_worker, args=(n, str(tmp_path / "store"), str(tmp_path)), nprocs=n, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(n)]
    inputs = [_inputs(r, n) for r in range(n)]
    for name in inputs[0]:
        expected = sum(x[name].double() for x in inputs)  # the sum computed here, in float64
        for rank, result in enumerate(ranks):
            ring = result[name]["ring"]
            assert result[name]["in_place"] and result[name]["contiguous"], name
            assert ring.shape == inputs[0][name].shape and ring.dtype == inputs[0][name].dtype, name
            assert torch.equal(ring, ranks[0][name]["ring"]), (name, rank)  # bitwise the same on every process
            if ring.dtype == torch.bfloat16:
                assert torch.equal(ring.double(), expected), name  # whole numbers below 256 add exactly
            torch.testing.assert_close(ring, result[name]["builtin"], msg=name)  # to rounding: another order
            torch.testing.assert_close(ring.double(), expected, rtol=1e-5, atol=1e-5, msg=name)
    assert all("another process a different one" in result["disagree"] for result in ranks)


def test_chunks_cover_the_tensor_with_sizes_one_apart():
    assert chunk_bounds(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert chunk_bounds(2, 4) == [(0, 1), (1, 2), (2, 2), (2, 2)]  # fewer elements than processes: empty chunks
    assert chunk_bounds(0, 3) == [(0, 0)] * 3


def test_one_process_is_a_no_op(tmp_path):
    x = torch.randn(5)
    before = x.clone()
    assert ring_all_reduce(x) is x and torch.equal(x, before)  # no process group
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert ring_all_reduce(x) is x and torch.equal(x, before)  # a group of one
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------- train.py
TRAIN = 2
"""Processes of the training runs."""
UPDATES = 2
"""Classifier updates per run."""
RUNS = {
    "classifier": ["--task", "mnist", "--net", "cnn", "--width", "0.125", "--batch-size", "16", "--epochs", "1",
                   "--max-steps", str(UPDATES)],
    "ppo": ["--agent", "ppo", "--env", "CartPole", "--total-steps", "32", "--num-envs", "2", "--num-steps", "16",
            "--update-epochs", "2", "--eval-episodes", "0"],
}
"""A DDP job (a comm hook) and an agent (:func:`rlkit.distributed.all_reduce_gradients`)."""


def _train_worker(rank: int, tmp: str) -> None:
    """train.py's main() for each job with each --allreduce, in the group torchrun would give it; records how
    many elements this process sent point to point in each run."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(TRAIN))
    torch.set_num_threads(1)
    from rlkit.cli.train import main
    from rlkit.distributed import exit_without_teardown

    sent = [0]
    batch_isend_irecv = dist.batch_isend_irecv

    def counting(ops: list[dist.P2POp]) -> list:
        sent[0] += sum(op.tensor.numel() for op in ops if op.op is dist.isend)
        return batch_isend_irecv(ops)

    dist.batch_isend_irecv = counting  # what ring_all_reduce sends through
    counts = {}
    for job, argv in RUNS.items():
        for allreduce in ("builtin", "ring"):
            run = f"{job}-{allreduce}"
            dist.init_process_group("gloo", init_method=f"file://{tmp}/store-{run}", rank=rank, world_size=TRAIN,
                                    timeout=TIMEOUT)
            sent[0] = 0
            data = ["--data-dir", f"{tmp}/data"] if job == "classifier" else []
            main([*argv, *data, "--allreduce", allreduce, "--seed", "3", "--no-progress", "--run-dir", f"{tmp}/{run}"])
            # main() left the group, as train.py does
            counts[run] = sent[0]
    torch.save(counts, Path(tmp) / f"sent{rank}.pt")
    exit_without_teardown()


def _weights(state: dict) -> dict[str, torch.Tensor]:
    """The weights (no optimizer or counters) of a saved learner state: the model's or the agent's net's."""
    return state["model"] if "model" in state else state["net"]


def test_ring_flag_takes_the_same_steps_as_the_builtin_all_reduce_and_sends_the_gradients(tmp_path):
    from rlkit.checkpoint import load_checkpoint
    from rlkit.cli.train import prepare
    from rlkit.data import make_tiny_dataset

    make_tiny_dataset("mnist", tmp_path / "data", train=64, test=16, seed=0)
    mp.spawn(_train_worker, args=(str(tmp_path),), nprocs=TRAIN, join=True)
    sent = [torch.load(tmp_path / f"sent{r}.pt", weights_only=True) for r in range(TRAIN)]
    for job in RUNS:
        builtin, ring = (load_checkpoint(tmp_path / f"{job}-{a}") for a in ("builtin", "ring"))
        assert ring["settings"]["allreduce"] == "ring" and builtin["settings"]["allreduce"] == "builtin"
        assert ring["loop"]["steps"] == builtin["loop"]["steps"] > 0
        builtin_weights, ring_weights = _weights(builtin["learner"]), _weights(ring["learner"])
        for key, value in builtin_weights.items():
            torch.testing.assert_close(ring_weights[key], value, rtol=1e-5, atol=1e-6, msg=f"{job} {key}")
        params = sum(v.numel() for k, v in builtin_weights.items() if k.endswith(("weight", "bias")))
        updates = UPDATES if job == "classifier" else 2  # ppo: one rollout, --update-epochs 2
        for counts in sent:
            assert counts[f"{job}-builtin"] == 0, job
            # with 2 processes the ring sends each element once: every update's gradients went around it
            assert counts[f"{job}-ring"] >= updates * params, (job, counts, params)
    # --resume keeps the saved choice unless told otherwise
    assert prepare(["--resume", str(tmp_path / "ppo-ring")]).settings.allreduce == "ring"
    assert prepare(["--resume", str(tmp_path / "ppo-ring"), "--allreduce", "builtin"]).settings.allreduce == "builtin"


@pytest.mark.parametrize("names", [{}, {"agent": "ppo", "env": "CartPole"}, {"task": "mnist", "net": "cnn"}])
def test_help_says_the_flag_applies_under_torchrun(names):
    from rlkit.cli.train import build_parser
    from rlkit.jobs import select_job

    job = select_job(names.get("agent"), names.get("task"), names.get("net")) if names else None
    text = " ".join(build_parser(job, names).format_help().split())
    assert "--allreduce {builtin,ring}" in text and "applies under torchrun only" in text


def test_an_unknown_allreduce_is_a_one_line_error(tmp_path):
    from rlkit.errors import UserError
    from rlkit.jobs.agent import AgentSettings
    from rlkit.jobs.supervised import SupervisedSettings

    with pytest.raises(UserError, match="use one of builtin, ring"):
        SupervisedSettings("mnist", "cnn", str(tmp_path), allreduce="tree")
    with pytest.raises(UserError, match="use one of builtin, ring"):
        AgentSettings("ppo", "CartPole", 100, allreduce="Ring")
