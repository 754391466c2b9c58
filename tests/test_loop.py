"""The shared loop with a fake learner and source: what it logs, when it evaluates and saves."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlkit.checkpoint import load_checkpoint
from rlkit.loop import BEST_NAME, Callback, Loop, LoopConfig, StopOnReward


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


class WeightLearner:
    """One weight that counts its updates, so a checkpoint tells the step it was taken at."""

    def __init__(self):
        self.weight = torch.zeros(1)

    def update(self, batch):
        self.weight += 1
        return {}

    def state_dict(self):
        return {"weight": self.weight.clone()}

    def load_state_dict(self, state):
        self.weight = state["weight"].clone()


def scripted(values):
    """An evaluation returning ``values`` in turn as eval/mean_return."""
    returns = iter(values)
    return lambda: {"eval/mean_return": next(returns), "eval/std_return": 0.5}


def test_best_pt_holds_the_state_of_the_best_evaluation_and_survives_a_resume(tmp_path):
    config = LoopConfig(total_steps=8, eval_interval=2, progress=False, best_metric="eval/mean_return")
    loop = Loop(WeightLearner(), CountingSource(), config, tmp_path, header={"kind": "test"},
                evaluate=scripted([1.0, 7.0, 3.0, float("nan")]))
    loop.run()
    best = load_checkpoint(tmp_path / BEST_NAME)
    assert best["best"] == {"step": 4, "metric": "eval/mean_return", "value": 7.0}  # a NaN return is never best
    assert best["learner"]["weight"].item() == 4 and best["loop"]["steps"] == 4
    assert load_checkpoint(tmp_path)["loop"]["best"]["step"] == 4  # the record travels with checkpoint.pt
    # Resumed and extended: a worse evaluation leaves best.pt alone, a better one replaces it.
    resumed = Loop(WeightLearner(), CountingSource(), dataclasses.replace(config, total_steps=12), tmp_path,
                   header={"kind": "test"}, evaluate=scripted([6.0, 9.0]))
    resumed.restore(load_checkpoint(tmp_path))
    resumed.run()
    best = load_checkpoint(tmp_path / BEST_NAME)
    assert best["best"]["step"] == 12 and best["best"]["value"] == 9.0 and best["learner"]["weight"].item() == 12


def test_a_malformed_best_record_is_ignored(tmp_path):
    loop = Loop(WeightLearner(), CountingSource(), LoopConfig(total_steps=2, progress=False), tmp_path,
                header={"kind": "test"})
    for record in ("garbage", {"step": "4", "value": 1.0}, {"step": 4, "value": float("inf")}, None):
        checkpoint = {"learner": {"weight": torch.zeros(1)}, "source": {"steps": 0},
                      "loop": {"steps": 0, "wall_time": 0.0, "best": record}, "torch_rng": torch.get_rng_state()}
        loop.restore(checkpoint)
        assert loop.best is None


class Recorder(Callback):
    def __init__(self, stop_at_evaluation: int | None = None):
        self.steps, self.evaluations, self.checkpoints = [], [], []
        self.stop_at = stop_at_evaluation

    def on_step(self, loop, step):
        self.steps.append(step)

    def on_evaluation(self, loop, step, metrics):
        self.evaluations.append((step, metrics["eval/mean_return"]))
        return len(self.evaluations) != self.stop_at

    def on_checkpoint(self, loop, step, path):
        self.checkpoints.append((step, path.name))


def test_callbacks_see_every_step_evaluation_and_checkpoint(tmp_path):
    recorder = Recorder()
    loop = Loop(WeightLearner(), CountingSource(),
                LoopConfig(total_steps=6, eval_interval=3, checkpoint_interval=4, progress=False,
                           best_metric="eval/mean_return"),
                tmp_path, header={"kind": "test"}, evaluate=scripted([2.0, 1.0]), callbacks=[recorder])
    loop.run()
    assert recorder.steps == [1, 2, 3, 4, 5, 6]
    assert recorder.evaluations == [(3, 2.0), (6, 1.0)]
    assert recorder.checkpoints == [(3, "best.pt"), (4, "checkpoint.pt"), (6, "checkpoint.pt")]
    assert not loop.stopped_early


def test_a_callback_stops_the_run_early_saved_and_resumable(tmp_path, capsys):
    recorder = Recorder(stop_at_evaluation=2)
    loop = Loop(WeightLearner(), CountingSource(), LoopConfig(total_steps=100, eval_interval=10, progress=False),
                tmp_path, header={"kind": "test"}, evaluate=scripted([1.0, 2.0]), callbacks=[recorder])
    loop.run()
    assert loop.stopped_early and loop.source.steps == 20
    assert load_checkpoint(tmp_path)["learner"]["weight"].item() == 20
    assert len((tmp_path / "eval.jsonl").read_text().splitlines()) == 2  # no extra final evaluation
    assert capsys.readouterr().out.splitlines()[-1].startswith("stopped early by a callback at step 20")


def test_stop_on_reward_stops_at_the_first_evaluation_reaching_the_threshold(tmp_path):
    loop = Loop(WeightLearner(), CountingSource(), LoopConfig(total_steps=100, eval_interval=5, progress=False),
                tmp_path, header={"kind": "test"}, evaluate=scripted([10.0, 199.9, 200.0, 300.0]),
                callbacks=[StopOnReward(200.0)])
    loop.run()
    assert loop.source.steps == 15 and loop.stopped_early


def test_without_a_progress_bar_each_evaluation_prints_a_line_and_the_run_a_summary(tmp_path, capsys):
    loop = Loop(WeightLearner(), CountingSource(),
                LoopConfig(total_steps=4, eval_interval=2, progress=False, best_metric="eval/mean_return"),
                tmp_path, header={"kind": "test"}, evaluate=scripted([5.0, 4.0]))
    loop.run()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step 2/4: mean_return 5 ± 0.5 (best 5 at step 2)"
    assert lines[1] == "step 4/4: mean_return 4 ± 0.5 (best 5 at step 2)"
    assert lines[2].startswith("finished at step 4 after ") and lines[2].endswith(
        f"; last evaluation mean_return 4 ± 0.5; best 5 at step 2 ({tmp_path / BEST_NAME})")
    evals = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4] and 0 <= evals[0]["wall_time"] <= evals[1]["wall_time"]


def test_tensorboard_gets_the_run_hyperparameters(tmp_path):
    header = {"job": "agent", "settings": {"agent": "dqn", "env": "CartPole", "total_steps": 4},
              "config": {"learning_rate": 0.001, "hidden": [64, 64], "double": True}}
    Loop(WeightLearner(), CountingSource(), LoopConfig(total_steps=4, progress=False), tmp_path, header=header).run()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    data = events.PluginTagToContent("hparams")
    from tensorboard.plugins.hparams import plugin_data_pb2

    session = plugin_data_pb2.HParamsPluginData.FromString(data["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["agent"].string_value == "dqn"
    assert session.hparams["learning_rate"].number_value == 0.001
    assert session.hparams["hidden"].string_value == "[64, 64]"
    assert session.hparams["double"].number_value == 1  # torch writes a bool as a number


def test_a_run_resumed_within_the_second_writes_an_event_file_that_sorts_last(tmp_path):
    """CI of stop 22: TensorBoard reads event files in name order and the name's counter compares as text, so a
    resume in the same second as the first run (a crash restarted at once; the tests) could be read first and its
    purge of the replayed steps undone. A file that sorts after any real one of this second stands for that case."""
    import train

    run = tmp_path / "run"
    train.main(["--agent", "dqn", "--env", "CartPole", "--total-steps", "200", "--learning-starts", "100",
                "--hidden", "8", "--run-dir", str(run), "--no-progress", "--eval-episodes", "1"])
    before = {path.name for path in run.glob("events.out.tfevents.*")}
    (run / f"events.out.tfevents.{int(time.time()):010d}.zzzz.99999.999").write_bytes(b"")
    train.main(["--resume", str(run), "--total-steps", "400", "--no-progress"])
    names = sorted(path.name for path in run.glob("events.out.tfevents.*"))
    assert names[-1] not in before and ".zzzz." not in names[-1]
