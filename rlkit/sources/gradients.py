"""The source of a parameter server's loop (``--distributed ps-sync|ps-async``, rank 0): its batches are the
gradients the workers push (:mod:`rlkit.parameter_server`), and its clock counts the server's optimizer steps."""

from __future__ import annotations

from typing import Any

from rlkit.errors import SourceLost, UserError
from rlkit.parameter_server import LOST, ParameterServer, Push


class GradientSource:
    """Each :meth:`next` is the pushes of one step: one of every worker (synchronous), or the first to arrive
    (asynchronous). ``steps`` counts steps; ``applied`` how many of each worker's gradients were applied, which is
    where each worker's batches resume."""

    recent_returns: tuple[float, ...] = ()

    def __init__(self, server: ParameterServer):
        self.server = server
        self.steps = 0
        self.applied = [0] * server.workers

    def next(self) -> list[Push]:
        wanted = self.server.workers if self.server.synchronous else 1
        pushes: list[Push] = []
        while len(pushes) < wanted:
            push = self.server.pushes.get()
            if push is LOST:  # before anything is taken: the loop saves this step's state and stops
                raise SourceLost(self.failure() or "a parameter-server worker died")
            assert isinstance(push, Push)
            pushes.append(push)
        for push in pushes:
            self.applied[push.worker - 1] += 1
        self.steps += 1
        return pushes

    def failure(self) -> str | None:
        """Which worker died, if one did (None otherwise). The loop asks when a stop signal ends the run: torchrun
        stops every process as soon as one dies, often before :meth:`next` has taken the loss from the queue."""
        if not self.server.lost:
            return None
        rank, error = self.server.lost[0]
        return f"parameter-server worker {rank} (rank {rank}) died at step {self.steps} ({error})"

    def pop_finished(self) -> list[tuple[int, float, int]]:
        return []

    def reset(self, seed: int | None = None) -> None:
        pass

    def close(self) -> None:
        self.server.stop()  # the workers then leave (their gradients in flight are not applied, so not counted)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "applied": list(self.applied)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        applied = list(state["applied"])
        if len(applied) != self.server.workers:
            raise UserError(f"the run was saved with {len(applied)} parameter-server workers, not "
                            f"{self.server.workers}: resume it under torchrun with {len(applied) + 1} processes")
        self.steps, self.applied = state["steps"], applied
        self.server.next_batch = list(applied)  # each worker continues with its first batch not yet applied
