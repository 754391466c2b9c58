"""Checkpoints are written atomically, read safely, and the loop never loses one."""

from __future__ import annotations

import pytest
import torch

from rlkit.checkpoint import load_checkpoint, save_checkpoint
from rlkit.errors import UserError
from rlkit.loop import Loop, LoopConfig


def test_round_trip_with_weights_only(tmp_path):
    """Tensors, nested dicts, numpy RNG states (128-bit ints) survive a weights_only load."""
    import numpy as np

    rng_state = np.random.default_rng(3).bit_generator.state
    save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(3.0), "rng": rng_state, "n": 5})
    data = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(data["w"], torch.arange(3.0)) and data["rng"] == rng_state and data["n"] == 5
    assert data["format"] == "rlkit-checkpoint" and data["version"] == 2


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact and no temporary file behind."""
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"generation": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"generation": 2})
    assert load_checkpoint(path)["generation"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("this ran while loading a checkpoint",))


def test_code_in_a_checkpoint_is_refused(tmp_path, capsys):
    """A pickle that would call a function on load is refused with a one-line UserError, and nothing runs."""
    path = tmp_path / "evil.pt"
    torch.save({"format": "rlkit-checkpoint", "payload": RunsCodeWhenUnpickled()}, path)
    with pytest.raises(UserError, match="unsafe to load"):
        load_checkpoint(path)
    assert "this ran" not in capsys.readouterr().out


def test_newer_format_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {})
    data = torch.load(tmp_path / "c.pt", weights_only=True)
    data["version"] = 99
    torch.save(data, tmp_path / "c.pt")
    with pytest.raises(UserError, match="newer rlkit"):
        load_checkpoint(tmp_path / "c.pt")


class CountingLearner:
    def __init__(self):
        self.updates = 0

    def update(self, batch):
        self.updates += 1
        return {"losses/x": float(batch)}

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state):
        self.updates = state["updates"]


class CountingSource:
    """One step per call; a batch every other step; raises KeyboardInterrupt at ``interrupt_at``."""

    recent_returns = ()

    def __init__(self, interrupt_at=None):
        self.steps, self.interrupt_at = 0, interrupt_at

    def reset(self, seed=None):
        pass

    def close(self):
        pass

    def next(self):
        if self.steps == self.interrupt_at:
            raise KeyboardInterrupt
        self.steps += 1
        return self.steps if self.steps % 2 == 0 else None

    def pop_finished(self):
        return []

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def make_loop(tmp_path, source, total=100, checkpoint_interval=30):
    config = LoopConfig(total_steps=total, checkpoint_interval=checkpoint_interval, log_interval=10, progress=False)
    return Loop(CountingLearner(), source, config, tmp_path, header={"kind": "test"})


def test_loop_checkpoints_on_schedule_and_at_the_end(tmp_path, monkeypatch):
    """Checkpoints at every multiple of the interval and at the end, with learner and source state."""
    saved_at = []
    loop = make_loop(tmp_path, CountingSource())
    original = loop.save
    monkeypatch.setattr(loop, "save", lambda: (saved_at.append(loop.source.steps), original()))
    loop.run()
    assert saved_at == [30, 60, 90, 100]
    data = load_checkpoint(tmp_path)
    assert data["loop"]["steps"] == 100 and data["learner"]["updates"] == 50 and data["kind"] == "test"


def test_interrupt_saves_and_resume_continues(tmp_path):
    """Ctrl-C writes a checkpoint; a new loop restored from it finishes the run with the same totals."""
    loop = make_loop(tmp_path, CountingSource(interrupt_at=45), checkpoint_interval=0)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    data = load_checkpoint(tmp_path)
    assert data["loop"]["steps"] == 45 and data["learner"]["updates"] == 22
    resumed = make_loop(tmp_path, CountingSource(), checkpoint_interval=0)
    resumed.restore(data)
    resumed.run()
    assert resumed.source.steps == 100 and resumed.learner.updates == 50
