"""The NumPy networks (assignments 1 and 2) as learners of the shared loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rlkit.supervised.classifier import ClassifierConfig, learning_rate_at
from rlkit.supervised.numpy_nn import NumpyClassifier


class NumpyLearner:
    """Adapts a :class:`rlkit.supervised.numpy_nn.NumpyClassifier` to the loop: the learning-rate schedule, and
    checkpoints as tensors (readable with ``weights_only=True``)."""

    def __init__(self, model: Any, config: ClassifierConfig, steps_per_epoch: int):
        self.config, self.steps_per_epoch = config, steps_per_epoch
        self.classifier = NumpyClassifier(model, config.learning_rate, config.momentum, config.weight_decay)
        self.updates = 0

    def update(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        self.classifier.set_lr(learning_rate_at(self.config, self.updates / self.steps_per_epoch))
        self.updates += 1
        return self.classifier.update(batch)

    def log_probs(self, images: torch.Tensor, mc_samples: int = 0) -> torch.Tensor:
        logits = torch.from_numpy(np.asarray(self.classifier.logits(images.cpu().numpy()), dtype=np.float32))
        return F.log_softmax(logits, dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"classifier": _to_tensors(self.classifier.state_dict()), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.classifier.load_state_dict(_to_numpy(state["classifier"]))
        self.updates = state["updates"]


def _to_tensors(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_tensors(v) for k, v in tree.items()}
    return torch.from_numpy(np.array(tree)) if isinstance(tree, np.ndarray) else tree


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return tree.numpy() if isinstance(tree, torch.Tensor) else tree
