"""Data-parallel training under torch.distributed (gloo, two processes on loopback), as torchrun runs it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from rlkit.data import make_tiny_dataset
from rlkit.supervised.classifier import Classifier, ClassifierConfig

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 4, 4, generator=g), torch.randint(3, (8,), generator=g)) for _ in range(3)]


def _process(rank: int, port: int, scenario: str, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from rlkit.distributed import exit_without_teardown, init_distributed, shutdown

    init_distributed(torch.device("cpu"))
    try:
        if scenario == "classifier":
            learner = Classifier(_tiny_model(), ClassifierConfig(), 1, torch.device("cpu"))
            for images, labels in _batches():
                half = slice(rank * 4, rank * 4 + 4)  # each process gets its half of the batch
                learner.update((images[half], labels[half]))
            torch.save(learner.model.state_dict(), Path(tmp) / f"rank{rank}.pt")
        elif scenario in ("a2c", "ppo"):
            agent = _agent(scenario)
            rollout = _rollout(agent)
            half = slice(rank * 16, rank * 16 + 16)
            agent.update(rollout.rows(half))
            torch.save(agent.net.state_dict(), Path(tmp) / f"rank{rank}.pt")
        elif scenario == "dqn":
            from rlkit.agents import get_agent_spec
            from rlkit.errors import UserError
            from rlkit.jobs.agent import AgentJob, AgentSettings

            try:
                AgentJob().build(AgentSettings("q-learning", "FrozenLake", 100),
                                  get_agent_spec("q-learning").preset("other"), Path(tmp) / "run")
            except UserError as error:
                torch.save({"error": str(error)}, Path(tmp) / f"rank{rank}.pt")
        else:
            from rlkit.jobs import JOBS
            from rlkit.jobs.supervised import SupervisedSettings

            settings = SupervisedSettings("mnist", "cnn", str(Path(tmp) / "data"), device="cpu", progress=False,
                                          max_steps=4, eval_interval=2)
            config = ClassifierConfig(width=0.125, batch_size=16, epochs=1)
            loop = JOBS["classifier"].build(settings, config, Path(tmp) / "run")
            loop.run()
            torch.save(loop.learner.model.state_dict(), Path(tmp) / f"rank{rank}.pt")
    finally:
        shutdown()
    exit_without_teardown()  # only the success path: a failure reaches mp.spawn with its traceback


def _agent(name: str):
    import dataclasses

    import gymnasium as gym

    from rlkit.agents import get_agent_spec

    spec = get_agent_spec(name)
    config = spec.preset("other")
    if name == "ppo":  # full-batch epochs, advantages as given: the update is then a mean over the whole rollout
        config = dataclasses.replace(config, num_minibatches=1, update_epochs=3, normalize_advantage=False)
    torch.manual_seed(0)
    return spec.agent_class(config, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), device="cpu",
                            total_steps=1_000, seed=0)


def _rollout(agent):
    """A fixed rollout of 32 steps (each process takes its 16)."""
    from rlkit.buffers.rollout import RolloutBatch

    g = torch.Generator().manual_seed(2)
    obs = torch.randn(32, 4, generator=g)
    actions = torch.randint(2, (32,), generator=g)
    with torch.no_grad():
        dist, values = agent.net(obs)
        log_probs = dist.log_prob(actions)
    advantages = torch.randn(32, generator=g)
    return RolloutBatch(obs, actions, log_probs, values, advantages, values + advantages, torch.ones(32))


def _spawn(scenario: str, tmp: Path) -> list[dict]:
    mp.spawn(_process, args=(_free_port(), scenario, str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_ddp_equals_one_process_on_the_whole_batch(tmp_path):
    ranks = _spawn("classifier", tmp_path)
    single = Classifier(_tiny_model(), ClassifierConfig(), 1, torch.device("cpu"))
    for batch in _batches():
        single.update(batch)
    for key, value in single.model.state_dict().items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # the processes never drift apart
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ranks[0]["1.weight"], _tiny_model().state_dict()["1.weight"])  # it did train


@pytest.mark.slow
def test_supervised_run_under_two_processes_writes_once(tmp_path):
    make_tiny_dataset("mnist", tmp_path / "data", train=128, test=32, seed=0)
    ranks = _spawn("loop", tmp_path)
    for key in ranks[0]:
        if "running_" not in key and "num_batches" not in key:  # batch-norm statistics are the first process's,
            assert torch.equal(ranks[0][key], ranks[1][key]), key  # broadcast before each forward; weights agree
    run = tmp_path / "run"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # only the first process writes TensorBoard
    evals = (run / "eval.jsonl").read_text().splitlines()
    assert len(evals) == 2  # steps 2 and 4, written once each
    from rlkit.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(run)
    assert checkpoint["loop"]["steps"] == 4
    assert all(not k.startswith("module.") for k in checkpoint["learner"]["model"])  # loads without torchrun


def test_a2c_update_under_two_processes_equals_one_process_on_the_whole_rollout(tmp_path):
    ranks = _spawn("a2c", tmp_path)
    single = _agent("a2c")
    single.update(_rollout(single))
    for key, value in single.net.state_dict().items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6)
    before = _agent("a2c").net.state_dict()
    assert any(not torch.equal(ranks[0][key], before[key]) for key in before)  # it did take a step


def test_ppo_update_under_two_processes_equals_one_process_on_the_whole_rollout(tmp_path):
    ranks = _spawn("ppo", tmp_path)
    single = _agent("ppo")
    single.update(_rollout(single))
    before = _agent("ppo").net.state_dict()
    for key, value in single.net.state_dict().items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # averaged gradients: the same steps everywhere
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(ranks[0][key], before[key]) for key in before)


def test_agents_of_one_process_refuse_torchrun_with_one_line(tmp_path):
    """A tabular learner steps one table on one stream of experience: it refuses torchrun (the DQN family, DDPG,
    TD3 and SAC run with actors there: tests/test_actors.py)."""
    ranks = _spawn("dqn", tmp_path)
    assert all("cannot run under torchrun" in r["error"] and "a2c, ppo" in r["error"] for r in ranks)


def test_gan_and_video_runs_refuse_torchrun(monkeypatch, tmp_path):
    from rlkit.errors import UserError
    from rlkit.jobs import select_job
    from rlkit.jobs.supervised import SupervisedSettings

    monkeypatch.setenv("WORLD_SIZE", "2")
    for task, net in (("mnist", "acgan"), ("ucf101", "r3d18")):
        job = select_job(None, task, net)
        with pytest.raises(UserError, match="start it without torchrun"):
            job.build(SupervisedSettings(task, net, str(tmp_path)), job.preset({"net": net}), tmp_path / "run")


def test_exit_without_teardown_flushes_output_and_keeps_the_exit_code():
    import subprocess
    import sys

    code = "import sys; from rlkit.distributed import exit_without_teardown; print('saved', end=''); " \
           "print('bye', end='', file=sys.stderr); exit_without_teardown(3)"
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=buffered)
    assert (done.returncode, done.stdout, done.stderr) == (3, "saved", "bye")  # os._exit alone would lose them
