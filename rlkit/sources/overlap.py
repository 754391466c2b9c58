"""Acting and learning at once (``--overlap on``): while the learner updates on a minibatch, a thread plays the env
steps that come before the next update.

Those steps act with a copy of the policy taken before the update (a staleness of exactly one update: the steps
between updates k and k+1 choose their actions with the weights after update k - 1), so the learner's weights are
never read while the optimizer writes them. The steps and updates come in the same order and numbers as without
overlap; only the weights behind those actions differ. Torch kernels and most env steppers (ALE, MuJoCo) release
the GIL, so on two or more cores the env and the update run side by side. A run is not bit-for-bit reproducible
with overlap (the update and the acting copy draw from torch's global generator in an order the threads decide):
``--overlap off`` is the exact one.
"""

from __future__ import annotations

import threading
from typing import Any

from rlkit.agents.base import Agent
from rlkit.buffers import Batch
from rlkit.envs import EpisodeSignals
from rlkit.sources.replay import ReplaySource


class OverlappedReplaySource(ReplaySource):
    """:class:`ReplaySource` whose env steps between updates run in a thread during the update before them.

    Every public method first waits for that thread, so the loop, checkpoints and evaluation see the source at
    rest. ``twin`` acts: an agent of the same class and config, given the learner's acting weights after each
    update (:meth:`~rlkit.agents.base.Agent.acting_state`) and sharing its random generator.
    """

    def __init__(self, env: EpisodeSignals, agent: Agent, twin: Agent, frame_stack: int = 1,
                 seed: int | None = None):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        super().__init__(env, agent, frame_stack, seed)
        self.learner, self.twin = agent, twin
        twin.rng = agent.rng  # one stream of exploration draws, saved with the learner's state
        self.agent = twin  # what ReplaySource.step acts with
        self.stop_at = float("inf")
        """The thread takes no step past this count (the loop sets its ``total_steps``): a phase of many steps
        between updates does not run past the end of the run."""

    def _wait(self) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None
            if self._error is not None:
                error, self._error = self._error, None
                raise error

    def _collect(self) -> None:
        """The steps before the next update is due (run in the thread)."""
        try:
            # The step that ends the run is left to the loop's thread, which then hands out the last batch.
            while (self.pending_updates < 1.0 or not self._ready()) and self._steps + self.env.num_envs < self.stop_at:
                self.step()
        except BaseException as error:  # raised again in the loop's thread by _wait
            self._error = error

    def next(self) -> Batch | None:
        self._wait()
        if self.pending_updates < 1.0 or not self._ready():  # the thread, if any, stopped short of the next update
            self.step()
        if self.pending_updates < 1.0 or not self._ready():
            return None
        self.pending_updates -= 1.0
        self.learner.step = self.steps
        batch = self.buffer.sample(self.batch_size)
        self.twin.load_acting_state(self.learner.acting_state())  # the weights of the update before this one
        if self.pending_updates < 1.0:  # the next call would step: take those steps during this update
            self._thread = threading.Thread(target=self._collect, name="rlkit-overlap", daemon=True)
            self._thread.start()
        return batch

    # Everything else first waits for the thread (the thread itself reads and counts the steps).
    @property
    def steps(self) -> int:
        self._wait()
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        self._steps = value

    def reset(self, seed: int | None = None) -> None:
        self._wait()
        super().reset(seed)

    def pop_finished(self) -> list[tuple[int, float, int]]:
        self._wait()
        return super().pop_finished()

    @property
    def recent_returns(self) -> list[float]:
        self._wait()
        return list(self.episodes.recent_returns)

    def save_buffer(self, path: str) -> None:
        self._wait()
        super().save_buffer(path)

    def state_dict(self) -> dict[str, Any]:
        self._wait()
        return super().state_dict()

    def close(self) -> None:
        self._wait()
        super().close()
