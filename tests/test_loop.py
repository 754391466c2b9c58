"""The shared loop with a fake learner and source: what it logs, when it evaluates and saves."""

from __future__ import annotations

import json
import os
import signal

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlkit.checkpoint import load_checkpoint
from rlkit.loop import Loop, LoopConfig


class CountingSource:
    recent_returns = ()

    def __init__(self):
        self.steps = 0

    def reset(self, seed=None):
        pass

    def close(self):
        pass

    def next(self):
        self.steps += 1
        return self.steps

    def pop_finished(self):
        return []

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class AlternatingLearner:
    """Reports ``losses/every`` on each update and ``losses/odd`` only on odd batches (like a GAN's generator)."""

    def update(self, batch):
        metrics = {"losses/every": float(batch)}
        if batch % 2:
            metrics["losses/odd"] = 10.0 * batch
        return metrics

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_each_metric_is_averaged_over_the_updates_that_reported_it(tmp_path):
    loop = Loop(AlternatingLearner(), CountingSource(), LoopConfig(total_steps=8, log_interval=4, progress=False),
                tmp_path, header={"kind": "test"})
    loop.run()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    every = [(e.step, e.value) for e in events.Scalars("losses/every")]
    odd = [(e.step, e.value) for e in events.Scalars("losses/odd")]
    assert every == [(4, 2.5), (8, 6.5)]  # mean of 1..4, of 5..8
    assert odd == [(4, 20.0), (8, 60.0)]  # mean of 10 and 30, of 50 and 70: not divided by all four updates


def test_evaluation_and_checkpoint_on_schedule_and_once_at_the_end(tmp_path):
    calls = []
    loop = Loop(AlternatingLearner(), CountingSource(),
                LoopConfig(total_steps=10, eval_interval=5, checkpoint_interval=5, progress=False), tmp_path,
                header={"kind": "test"}, evaluate=lambda: calls.append(1) or {"eval/x": 1.0})
    saved = []
    real_save = loop.save
    loop.save = lambda: saved.append(loop.source.steps) or real_save()
    loop.run()
    steps = [json.loads(line)["step"] for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert steps == [5, 10] and len(calls) == 2
    assert load_checkpoint(tmp_path)["loop"]["steps"] == 10
    assert saved[0] == 5 and set(saved) == {5, 10}


class ClosingSource(CountingSource):
    """A source with workers to stop: records its close() calls."""

    def __init__(self):
        super().__init__()
        self.closed = 0

    def close(self):
        self.closed += 1


def test_source_is_closed_after_the_run_and_after_ctrl_c(tmp_path):
    """The loop calls source.close() once when training ends and once when Ctrl-C interrupts it (after saving)."""
    import pytest

    source = ClosingSource()
    Loop(AlternatingLearner(), source, LoopConfig(total_steps=4, progress=False), tmp_path / "done",
         header={"kind": "test"}).run()
    assert source.closed == 1

    def interrupt():
        assert source.closed == 0  # still running when the checkpoint below is saved
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: acted on at the end of this iteration
        return {}

    source = ClosingSource()
    loop = Loop(AlternatingLearner(), source, LoopConfig(total_steps=10, eval_interval=3, progress=False),
                tmp_path / "interrupted", header={"kind": "test"}, evaluate=interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert source.closed == 1 and load_checkpoint(tmp_path / "interrupted")["loop"]["steps"] == 3


def test_a_keyboard_interrupt_raised_by_code_saves_only_between_updates(tmp_path, capsys):
    """Where no handler can defer Ctrl-C (a loop outside the main thread) a KeyboardInterrupt raised during
    evaluation still saves (the update is complete), but one raised inside an update does not: that state is torn."""
    import pytest

    from rlkit.loop import Interrupted

    def interrupt():
        raise KeyboardInterrupt

    loop = Loop(AlternatingLearner(), CountingSource(), LoopConfig(total_steps=10, eval_interval=3, progress=False),
                tmp_path / "eval", header={"kind": "test"}, evaluate=interrupt)
    with pytest.raises(Interrupted):
        loop.run()
    assert load_checkpoint(tmp_path / "eval")["loop"]["steps"] == 3

    class TornLearner(AlternatingLearner):
        def update(self, batch):
            if batch == 5:
                raise KeyboardInterrupt
            return super().update(batch)

    with pytest.raises(KeyboardInterrupt):
        Loop(TornLearner(), CountingSource(), LoopConfig(total_steps=10, progress=False), tmp_path / "torn",
             header={"kind": "test"}).run()
    assert not (tmp_path / "torn" / "checkpoint.pt").exists()
    assert "in the middle of an update: not saved; no checkpoint was written" in capsys.readouterr().out


def test_a_resume_from_an_older_checkpoint_logs_each_step_once(tmp_path):
    """D18 (TensorBoard and eval.jsonl): a run killed after logging past its last checkpoint plays those steps
    again when resumed; what the killed process logged after the checkpoint is dropped, so no step is logged twice
    and no curve goes backwards."""
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import train

    run = tmp_path / "run"
    flags = ["--no-progress", "--eval-episodes", "1", "--eval-interval", "250", "--checkpoint-interval", "500"]
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "500", "--learning-starts", "100",
                "--hidden", "8", "--run-dir", str(run), *flags])
    shutil.copy(run / "checkpoint.pt", tmp_path / "at500.pt")
    train.main(["--resume", str(run), "--total-steps", "1000", "--no-progress"])  # logs up to 1000
    shutil.copy(tmp_path / "at500.pt", run / "checkpoint.pt")  # as if killed after logging 1000, saved at 500
    train.main(["--resume", str(run), "--total-steps", "1000", "--no-progress"])
    steps = [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()]
    assert steps == [250, 500, 750, 1000]
    events = EventAccumulator(str(run))
    events.Reload()
    logged = [event.step for event in events.Scalars("eval/mean_return")]
    assert logged == [250, 500, 750, 1000]
