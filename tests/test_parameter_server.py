"""The parameter server (``--distributed ps-sync|ps-async``, :mod:`rlkit.parameter_server`): a server and two
workers on torch.distributed.rpc, first as library calls in spawned processes, then as train.py under torchrun."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from rlkit.supervised.classifier import Classifier, ClassifierConfig

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
CONFIG = ClassifierConfig(optimizer="sgd", learning_rate=0.1, momentum=0.9)


from test_distributed import _free_port, _tiny_model  # noqa: E402  the data-parallel tests' net and port


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 4, 4, generator=g), torch.randint(3, (8,), generator=g)) for _ in range(n)]


class HalfBatches:
    """A worker's shard as :class:`rlkit.parameter_server.Worker` reads it: batch k is its half of ``_batches``'s
    k-th (worker 1 the first four rows, worker 2 the last four); worker 2 is slow when ``slow``, so that worker 1
    moves the parameters on while it computes."""

    def __init__(self, rank: int, n: int, slow: bool):
        self.rows, self.batches, self.slow, self.steps = slice((rank - 1) * 4, rank * 4), _batches(n), slow, 0
        self.seen: list[int] = []

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.slow:
            time.sleep(0.2)
        self.seen.append(self.steps)
        images, labels = self.batches[self.steps]
        return images[self.rows], labels[self.rows]


def _process(rank: int, port: int, mode: str, steps: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORKERS + 1))
    torch.set_num_threads(1)
    from rlkit.distributed import exit_without_teardown, init_rpc, shutdown
    from rlkit.parameter_server import ParameterServer, Worker, serve
    from rlkit.sources.gradients import GradientSource
    from rlkit.supervised.server_learner import ServerLearner

    classifier = Classifier(_tiny_model(), CONFIG, 1, torch.device("cpu"))
    if rank == 0:
        server = ParameterServer(WORKERS, synchronous=mode == "ps-sync")
        server.total = steps
        learner, source = ServerLearner(classifier, server), GradientSource(server)
        applied, logged = [], []
        serve(server)
        init_rpc(mode)
        server.watch()
        while source.steps < steps:  # what the loop does with them
            pushes = source.next()
            applied += [(push.worker, push.batch, server.version - push.version) for push in pushes]
            logged.append(learner.update(pushes))
        source.close()
        shutdown()
        torch.save({"model": classifier.model.state_dict(), "applied": applied, "logged": logged,
                    "received": server.received, "staleness": learner.staleness, "source": source.state_dict()},
                   Path(tmp) / "server.pt")
    else:
        shard = HalfBatches(rank, steps, slow=mode == "ps-async" and rank == 2)
        worker = Worker(rank, classifier, shard, seed=0)
        init_rpc(mode)
        worker.run()
        shutdown()
        torch.save({"pushed": worker.pushed, "seen": shard.seen}, Path(tmp) / f"worker{rank}.pt")
    exit_without_teardown()


def _spawn(mode: str, steps: int, tmp: Path) -> tuple[dict, list[dict]]:
    mp.spawn(_process, args=(_free_port(), mode, steps, str(tmp)), nprocs=WORKERS + 1, join=True)
    return (torch.load(tmp / "server.pt", weights_only=True),
            [torch.load(tmp / f"worker{r}.pt", weights_only=True) for r in range(1, WORKERS + 1)])


def test_sync_with_two_workers_equals_one_process_on_the_joined_batch(tmp_path):
    steps = 3
    server, workers = _spawn("ps-sync", steps, tmp_path)
    single = Classifier(_tiny_model(), CONFIG, 1, torch.device("cpu"))
    for batch in _batches(steps):  # the mean of the two halves' mean gradients is the whole batch's
        single.update(batch)
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(server["model"][key], value, rtol=1e-5, atol=1e-5)
    assert not torch.equal(server["model"]["1.weight"], _tiny_model().state_dict()["1.weight"])  # it did train
    assert sorted(server["applied"]) == [(w, k, 0) for w in (1, 2) for k in range(steps)]  # never stale
    assert [w["seen"] for w in workers] == [[0, 1, 2], [0, 1, 2]]
    assert server["source"] == {"steps": steps, "applied": [steps, steps]}


def test_async_applies_every_pushed_gradient_once_and_records_its_staleness(tmp_path):
    steps = 12
    server, workers = _spawn("ps-async", steps, tmp_path)
    applied = server["applied"]
    # every gradient pushed was applied, once: each worker's batches 0, 1, ... in order, none twice
    assert server["received"] == len(applied) == steps == sum(w["pushed"] for w in workers)
    for rank, worker in enumerate(workers, start=1):
        mine = [batch for w, batch, _ in applied if w == rank]
        assert mine == worker["seen"] == list(range(worker["pushed"])), rank
    assert server["source"] == {"steps": steps, "applied": [workers[0]["pushed"], workers[1]["pushed"]]}
    # staleness: versions published between a gradient's pull and its step; the slow worker's are stale
    staleness = [s for _, _, s in applied]
    assert server["staleness"] == {s: staleness.count(s) for s in set(staleness)}
    assert max(s for w, _, s in applied if w == 2) >= 1
    assert [m["charts/staleness"] for m in server["logged"]] == [float(s) for s in staleness]
    assert [m["charts/staleness_max"] for m in server["logged"]] == [float(s) for s in staleness]


def test_the_server_steps_with_a_gradient_strided_unlike_its_parameter():
    """autograd.grad can return a convolution's gradient in channels-last layout; the fused Adam reads .grad's
    memory in the parameter's order, so the server lays it out as the parameter first."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 3))
    plain, strided = (Classifier(_copy(model), ClassifierConfig(), 1, torch.device("cpu")) for _ in range(2))
    before = [p.detach().clone() for p in plain.params]
    grads = [torch.randn_like(p) for p in plain.params]
    channels_last = [g.contiguous(memory_format=torch.channels_last) if g.dim() == 4 else g for g in grads]
    assert not channels_last[0].is_contiguous()
    plain.apply_gradients(grads)
    strided.apply_gradients(channels_last)
    for p, q, start, g in zip(plain.params, strided.params, before, grads):
        assert torch.equal(p, q)
        torch.testing.assert_close(p - start, -1e-3 * g.sign(), rtol=0, atol=1e-6)  # Adam's first step: lr sign(g)


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


# ---------------------------------------------------------------------------------------------------- train.py
RUN = ["--task", "fashion-mnist", "--net", "cnn", "--width", "0.125", "--batch-size", "16", "--dropout", "0",
       "--no-progress"]


def _torchrun(args: list[str], nproc: int = 3, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               str(ROOT / "train.py"), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def _finish(process: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"torchrun did not finish:\n{out[-3000:]}")
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from rlkit.data import make_tiny_dataset

    folder = tmp_path_factory.mktemp("fashion")
    make_tiny_dataset("fashion-mnist", folder, train=128, test=32, seed=0)
    return folder


@pytest.mark.slow
def test_train_py_ps_sync_under_torchrun_resumes_to_the_same_weights_and_evaluates(data, tmp_path):
    from rlkit.checkpoint import load_checkpoint
    from rlkit.cli.evaluate import main as evaluate

    common = [*RUN, "--data-dir", str(data), "--distributed", "ps-sync", "--epochs", "2"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    out = _finish(_torchrun([*common, "--run-dir", str(whole)]))
    assert "finished at step 8" in out, out[-3000:]  # 128 images / 2 workers / 16: 4 steps an epoch
    out = _finish(_torchrun([*common, "--max-steps", "3", "--run-dir", str(split)]))
    assert "finished at step 3" in out, out[-3000:]
    out = _finish(_torchrun(["--resume", str(split), "--max-steps", "8"]))
    assert "finished at step 8" in out, out[-3000:]
    a, b = load_checkpoint(whole), load_checkpoint(split)
    assert a["settings"]["distributed"] == b["settings"]["distributed"] == "ps-sync"
    assert a["source"] == b["source"] == {"steps": 8, "applied": [8, 8]}
    for key, value in a["learner"]["model"].items():
        torch.testing.assert_close(b["learner"]["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert evaluate([str(whole), "--json", "--data-dir", str(data)])["steps"] == 8


@pytest.mark.slow
def test_train_py_ps_async_logs_staleness(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlkit.checkpoint import load_checkpoint

    run = tmp_path / "run"
    out = _finish(_torchrun([*RUN, "--data-dir", str(data), "--distributed", "ps-async", "--epochs", "1",
                             "--run-dir", str(run)]))
    assert "finished at step 8" in out, out[-3000:]  # async: a step is one gradient, 8 in an epoch
    checkpoint = load_checkpoint(run)
    assert checkpoint["source"]["steps"] == sum(checkpoint["source"]["applied"]) == 8
    events = EventAccumulator(str(run))
    events.Reload()
    means, maxima = (dict((e.step, e.value) for e in events.Scalars(tag))
                     for tag in ("charts/staleness", "charts/staleness_max"))
    assert means and means.keys() == maxima.keys()
    assert all(0 <= means[step] <= maxima[step] for step in means)


@pytest.mark.slow
def test_a_worker_that_dies_is_named_and_the_run_stops_with_a_checkpoint(data, tmp_path, load_benchmark):
    from rlkit.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from rlkit.cli.evaluate import main as evaluate

    # torchrun stops the other processes as soon as one dies: the server must still name the worker, save, and
    # leave with its own status (it was aborted with SIGABRT, or killed by that SIGTERM, before saying anything).
    run = tmp_path / "run"
    process = _torchrun([*RUN, "--data-dir", str(data), "--distributed", "ps-sync", "--epochs", "5000",
                         "--checkpoint-interval", "2", "--run-dir", str(run)])
    deadline = time.monotonic() + 120
    while not (run / CHECKPOINT_NAME).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    endings = load_benchmark("ps_worker_death")  # the benchmark that counts these endings
    worker = endings.rank_pid(process.pid, 2)
    assert worker is not None and process.poll() is None, "the run ended before a worker could be killed"
    os.kill(worker, signal.SIGKILL)
    out = _finish(process)
    assert process.returncode != 0
    line = next((line for line in out.splitlines() if "parameter-server worker 2 (rank 2) died" in line), None)
    assert line is not None, out[-3000:]
    statuses = endings.exit_statuses(out)
    # The server's own status, or torchrun's SIGTERM landing after the report; never an abort (-6) or a hang (-9).
    assert statuses.get("0") in ("2", "-15") and statuses.get("1") == "2", (statuses, out[-3000:])
    step = int(re.search(r"continues from step (\d+)", line).group(1))
    assert line.startswith("error: ") and "checkpoint saved" in line
    assert load_checkpoint(run)["loop"]["steps"] == step
    assert evaluate([str(run), "--json", "--data-dir", str(data)])["steps"] == step


# ---------------------------------------------------------------------------------------------------- refusals
def test_ps_modes_need_torchrun_with_a_worker(data, tmp_path, monkeypatch):
    from rlkit.cli.train import main
    from rlkit.errors import UserError

    for world in ("1", None):
        if world is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", world)
        with pytest.raises(UserError, match="needs a server and at least one worker: start it under torchrun"):
            main([*RUN, "--data-dir", str(data), "--distributed", "ps-async", "--run-dir", str(tmp_path / "r")])


def test_agents_and_one_process_jobs_refuse_ps_modes(tmp_path):
    from rlkit.cli.train import prepare
    from rlkit.errors import UserError
    from rlkit.jobs import JOBS
    from rlkit.jobs.supervised import SupervisedSettings

    with pytest.raises(UserError, match="--distributed ps-sync trains classifiers only.*drop --distributed"):
        prepare(["--agent", "ppo", "--env", "CartPole", "--distributed", "ps-sync"])
    with pytest.raises(UserError, match="--distributed ps-async trains classifiers only.*drop --distributed"):
        JOBS["gan"].refuse_torchrun(SupervisedSettings("mnist", "dcgan", str(tmp_path), distributed="ps-async"))
    with pytest.raises(UserError, match="use one of ddp, ps-sync, ps-async"):
        SupervisedSettings("mnist", "cnn", str(tmp_path), distributed="ps")


def test_a_resumed_run_keeps_its_mode(data, tmp_path):
    from rlkit.checkpoint import save_checkpoint
    from rlkit.cli.train import prepare
    from rlkit.errors import UserError

    settings = prepare([*RUN, "--data-dir", str(data), "--distributed", "ps-sync"]).settings
    assert settings.distributed == "ps-sync"
    assert prepare([*RUN, "--data-dir", str(data)]).settings.distributed == "ddp"
    import dataclasses

    from rlkit.config import config_to_dict

    save_checkpoint(tmp_path / "run" / "checkpoint.pt",
                    {"job": "classifier", "settings": dataclasses.asdict(settings),
                     "config": config_to_dict(ClassifierConfig()), "loop": {"steps": 1}})
    with pytest.raises(UserError, match="--distributed ps-async differs from the resumed run's ps-sync"):
        prepare(["--resume", str(tmp_path / "run"), "--distributed", "ps-async"])


# ---------------------------------------------------------------------------------------------------- the loop
class _Steps:
    """A source of batches 1, 2, ...; ``lost_at``: the step at which it loses a worker instead."""

    recent_returns = ()

    def __init__(self, lost_at: int | None = None):
        self.steps, self.lost_at = 0, lost_at

    def next(self) -> int:
        from rlkit.errors import SourceLost

        if self.steps == self.lost_at:
            raise SourceLost(f"parameter-server worker 2 (rank 2) died at step {self.steps} (eof)")
        self.steps += 1
        return self.steps

    def pop_finished(self):
        return []

    def close(self):
        pass

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class _Staleness:
    """Reports staleness ``batch % 3`` as the server's learner does (the mean and the maximum of one step)."""

    def update(self, batch: int) -> dict[str, float]:
        return {"charts/staleness": float(batch % 3), "charts/staleness_max": float(batch % 3)}

    def state_dict(self):
        return {"weight": torch.ones(1)}

    def load_state_dict(self, state):
        pass


def test_the_loop_logs_the_maximum_of_a_max_metric_over_the_interval(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlkit.loop import Loop, LoopConfig

    Loop(_Staleness(), _Steps(), LoopConfig(total_steps=8, log_interval=4, progress=False), tmp_path, {}).run()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    # staleness 1 2 0 1 then 2 0 1 2: means 1 and 1.25, maxima 2 and 2
    assert [(e.step, e.value) for e in events.Scalars("charts/staleness")] == [(4, 1.0), (8, 1.25)]
    assert [(e.step, e.value) for e in events.Scalars("charts/staleness_max")] == [(4, 2.0), (8, 2.0)]


def test_the_loop_saves_the_last_complete_step_when_its_source_loses_a_worker(tmp_path):
    from rlkit.checkpoint import load_checkpoint
    from rlkit.errors import SourceLost
    from rlkit.loop import Loop, LoopConfig

    loop = Loop(_Staleness(), _Steps(lost_at=5), LoopConfig(total_steps=100, progress=False), tmp_path, {})
    with pytest.raises(SourceLost, match=r"^parameter-server worker 2 \(rank 2\) died at step 5 \(eof\); checkpoint "
                                         rf"saved: --resume {re.escape(str(tmp_path))} continues from step 5$"):
        loop.run()
    assert load_checkpoint(tmp_path)["loop"]["steps"] == 5


def test_second_order_optimizers_refuse_a_parameter_server(data, tmp_path, monkeypatch):
    from rlkit.errors import UserError
    from rlkit.jobs import JOBS
    from rlkit.jobs.supervised import SupervisedSettings

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")  # refused before the data is read or any process is reached
    settings = SupervisedSettings("fashion-mnist", "cnn", str(data), device="cpu", distributed="ps-sync")
    for optimizer in ("lbfgs", "hessian-free"):
        with pytest.raises(UserError, match=f"--optimizer {optimizer} evaluates the loss several times per step"):
            JOBS["classifier"].build_parameter_server(settings, ClassifierConfig(optimizer=optimizer), tmp_path, None)
