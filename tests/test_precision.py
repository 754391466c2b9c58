"""``--precision``: bf16 autocast of the updates, the hardware detection behind ``auto``, and its fallbacks."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

import train
from rlkit.agents import AGENTS
from rlkit.buffers.replay import Batch
from rlkit.checkpoint import load_checkpoint
from rlkit.envs import make_env, resolve_env
from rlkit.errors import UserError
from rlkit.jobs import JOBS
from rlkit.loop import Loop, LoopConfig
from rlkit import runtime

from test_loop import CountingSource

CPU = torch.device("cpu")
AMX_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AVX2_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme sse sse2 avx avx2 fma
bugs\t\t: amx_bf16_is_not_a_flag_here
"""


def test_native_bf16_is_read_from_the_cpu_flags():
    """AMX or AVX512-BF16 in the ``flags`` line: native; AVX2 alone: emulated, so not (a word elsewhere in the file,
    here on the ``bugs`` line, does not count)."""
    assert runtime.has_fast_bf16(CPU, AMX_CPUINFO)
    assert runtime.has_fast_bf16(CPU, AMX_CPUINFO.replace(" amx_bf16", ""))  # avx512_bf16 alone
    assert not runtime.has_fast_bf16(CPU, AVX2_CPUINFO)
    assert not runtime.has_fast_bf16(CPU, "")


def test_a_gpu_that_only_emulates_bf16_does_not_count(monkeypatch):
    """torch.cuda.is_bf16_supported() says yes for emulation by default (pre-Ampere GPUs): ask without it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert not runtime.has_fast_bf16(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert runtime.has_fast_bf16(torch.device("cuda"))


def test_without_a_cpuinfo_file_bf16_counts_as_emulated(monkeypatch):
    """macOS and Windows have no /proc/cpuinfo: ``auto`` falls back to fp32 rather than failing."""
    def missing(self, *args, **kwargs):
        raise FileNotFoundError(self)
    monkeypatch.setattr(runtime.Path, "read_text", missing)
    assert not runtime.has_fast_bf16(CPU)
    assert runtime.update_autocast("auto", CPU) is None


def test_the_precision_choices_resolve_to_an_autocast_device_or_none(monkeypatch):
    assert runtime.update_autocast("fp32", CPU) is None
    assert runtime.update_autocast("bf16", CPU) == "cpu"
    monkeypatch.setattr(runtime, "has_fast_bf16", lambda device: True)
    assert runtime.update_autocast("auto", CPU) == "cpu"
    monkeypatch.setattr(runtime, "has_fast_bf16", lambda device: False)
    assert runtime.update_autocast("auto", CPU) is None
    with pytest.raises(UserError, match="use one of fp32, bf16, auto"):
        runtime.update_autocast("fp16", CPU)
    with pytest.raises(UserError, match="use --precision fp32"):
        runtime.update_autocast("bf16", torch.device("mps"))


class RecordingLearner:
    """Records, per update, whether autocast was on and what a linear layer computed in."""

    def __init__(self):
        self.layer, self.seen = torch.nn.Linear(4, 3), []

    def update(self, batch):
        out = self.layer(torch.ones(2, 4))
        self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return {"losses/x": float(out.detach().float().sum())}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.mark.parametrize("autocast, expected", [(None, (False, torch.float32)), ("cpu", (True, torch.bfloat16))])
def test_the_loop_runs_updates_under_the_autocast_it_is_given(tmp_path, autocast, expected):
    learner = RecordingLearner()
    Loop(learner, CountingSource(), LoopConfig(3, progress=False, autocast=autocast), tmp_path, {}).run()
    assert learner.seen == [expected] * 3
    assert learner.layer.weight.dtype == torch.float32  # the weights stay fp32
    assert not torch.is_autocast_enabled("cpu")  # and nothing leaks out of the loop


@pytest.mark.parametrize("kind", sorted(JOBS))
def test_every_job_has_the_precision_setting(kind):
    """make_loop reads ``settings.precision`` for every job; fp32 stays the default."""
    fields = {f.name: f for f in dataclasses.fields(JOBS[kind].settings_class)}
    assert fields["precision"].default == "fp32"


def test_a_bf16_dqn_update_changes_the_numbers_but_not_by_much():
    """The same DQN update from the same state on the same batch: under bf16 autocast the loss differs from fp32's
    (the products really ran in bf16) by well under a percent, and the weights stay fp32."""
    env = make_env("CartPole", 1, training=False)
    spec = AGENTS["dqn"]
    config = dataclasses.replace(spec.preset(resolve_env("CartPole").family), hidden=(256, 256))
    agent = spec.agent_class(config, env.single_observation_space, env.single_action_space, device="cpu", seed=0)
    generator = torch.Generator().manual_seed(0)
    batch = Batch(obs=torch.randn(64, 4, generator=generator), actions=torch.randint(0, 2, (64,), generator=generator),
                  rewards=torch.randn(64, generator=generator), next_obs=torch.randn(64, 4, generator=generator),
                  terminated=torch.zeros(64), discounts=torch.full((64,), 0.99), weights=torch.ones(64),
                  masks=torch.ones(64, 1), update_priorities=None)
    twin = copy.deepcopy(agent)
    fp32 = agent.update(batch)["losses/td_loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = twin.update(batch)["losses/td_loss"]
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=1e-2)
    assert all(p.dtype == torch.float32 for p in twin.q_net.parameters())
    env.close()


def test_a_run_keeps_its_precision_on_resume_unless_given(tmp_path):
    run = tmp_path / "run"
    common = ["--no-progress", "--eval-episodes", "0"]
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "300", "--learning-starts", "100",
                "--precision", "bf16", "--run-dir", str(run), *common])
    assert load_checkpoint(Path(run) / "checkpoint.pt")["settings"]["precision"] == "bf16"
    train.main(["--resume", str(run), "--total-steps", "400", *common])
    assert load_checkpoint(Path(run) / "checkpoint.pt")["settings"]["precision"] == "bf16"
    train.main(["--resume", str(run), "--total-steps", "500", "--precision", "fp32", *common])
    assert load_checkpoint(Path(run) / "checkpoint.pt")["settings"]["precision"] == "fp32"


def test_an_unknown_precision_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--agent", "dqn", "--env", "CartPole", "--precision", "fp16"])
    assert exit_info.value.code == 2
    assert "fp32" in capsys.readouterr().err


def _precision_benchmark():
    import importlib
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return importlib.import_module("precision_learning")


def test_the_precision_benchmark_table_by_hand():
    """Seeds' means 10, 12 (fp32) and 11, 13 (bf16): a gap of +1 within the spread of 1.4 is a tie."""
    bench = _precision_benchmark()
    rows = [{"precision": p, "seed": s, "mean": m, "wall_s": 5.0}
            for p, s, m in (("fp32", 1, 10.0), ("fp32", 2, 12.0), ("bf16", 1, 11.0), ("bf16", 2, 13.0))]
    report = bench.table(rows, [1, 2])
    assert "| fp32 | 10.0 | 12.0 | 11.0 ± 1.4 (2) | 10 |" in report
    assert "| bf16 | 11.0 | 13.0 | 12.0 ± 1.4 (2) | 10 |" in report
    assert report.endswith("bf16 against fp32: tie (gap of the means +1.0)")


def test_the_precision_benchmark_runs_both_precisions(tmp_path):
    bench = _precision_benchmark()
    out = tmp_path / "rows.jsonl"
    bench.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "300", "--seeds", "1", "--out", str(out),
                "--extra", "--learning-starts 100 --eval-episodes 2"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["precision"] for row in rows) == ["bf16", "fp32"]
    assert all(row["steps"] == 300 and row["mean"] > 0 for row in rows)
