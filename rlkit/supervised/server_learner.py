"""The learner of a parameter server's loop (``--distributed ps-sync|ps-async``, rank 0): it holds the classifier
and its optimizer, and its ``update`` applies the gradients the workers pushed."""

from __future__ import annotations

from typing import Any

import torch

from rlkit.parameter_server import ParameterServer, Push
from rlkit.supervised.classifier import Classifier


class ServerLearner:
    """``update(pushes)``: average the pushed gradients (one push when asynchronous), one optimizer step, publish
    the new version. Checkpoints are the classifier's own, so ``evaluate.py`` and a resume read them as any other.

    Args:
        classifier: the model and optimizer (built as for one process, without DDP).
        server: where the new parameters are published and staleness is read.
    """

    def __init__(self, classifier: Classifier, server: ParameterServer):
        self.classifier, self.server = classifier, server
        self.optimizer = classifier.optimizer  # where check_optimizer_states finds it after a resume
        self.staleness: dict[int, int] = {}
        """How many applied gradients had each staleness (versions published between their pull and their step)."""
        self.server.publish(classifier.state_tensors())

    @property
    def steps_per_epoch(self) -> int:
        return self.classifier.steps_per_epoch

    @steps_per_epoch.setter
    def steps_per_epoch(self, value: int) -> None:
        self.classifier.steps_per_epoch = value

    def update(self, pushes: list[Push]) -> dict[str, float]:
        staleness = [self.server.version - push.version for push in pushes]
        grads = [torch.stack(each).mean(0) for each in zip(*(push.grads for push in pushes))]
        metrics = self.classifier.apply_gradients(grads)
        # Batch-norm statistics are not trained by gradients: take the workers' (their mean when synchronous;
        # integer counters, the first worker's).
        self.classifier.load_buffers([torch.stack(each).mean(0) if each[0].is_floating_point() else each[0]
                                      for each in zip(*(push.buffers for push in pushes))])
        self.server.publish(self.classifier.state_tensors())
        for push in pushes:  # only now: the worker's next pull gets the parameters its gradient is in
            push.applied.set_result(None)
        for value in staleness:
            self.staleness[value] = self.staleness.get(value, 0) + 1
        return {"losses/loss": _mean(push.metrics["losses/loss"] for push in pushes),
                "charts/accuracy": _mean(push.metrics["charts/accuracy"] for push in pushes),
                "charts/staleness": _mean(staleness), "charts/staleness_max": float(max(staleness)), **metrics}

    def log_probs(self, images: torch.Tensor, mc_samples: int = 0) -> torch.Tensor:
        return self.classifier.log_probs(images, mc_samples)

    def state_dict(self) -> dict[str, Any]:
        return self.classifier.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.classifier.load_state_dict(state)
        self.server.publish(self.classifier.state_tensors())


def _mean(values: Any) -> float:
    values = list(values)
    return float(sum(values) / len(values))
