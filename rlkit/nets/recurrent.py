"""Recurrent cores (LSTM and GRU) shared by sequence classifiers and recurrent policies.

A core's state is one tensor, ``(2, layers, B, hidden)`` for an LSTM (h and c stacked) and ``(1, layers, B, hidden)``
for a GRU, so buffers and checkpoints store either kind the same way.
"""

from __future__ import annotations

import torch
from torch import nn

CELLS = ("lstm", "gru")


class RecurrentCore(nn.Module):
    """An LSTM or GRU over time-major sequences ``(T, B, features)`` whose state is zeroed where an episode starts.

    Args:
        input_size: features per step.
        hidden: units per layer (``out_features``).
        cell: ``lstm`` or ``gru``.
        num_layers: stacked layers.
    """

    def __init__(self, input_size: int, hidden: int, cell: str = "lstm", num_layers: int = 1):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown recurrent cell {cell!r}: use one of {', '.join(CELLS)}")
        self.cell, self.num_layers, self.out_features = cell, num_layers, hidden
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(input_size, hidden, num_layers)

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The zero state of ``batch`` sequences (on the core's device and in its dtype unless ``device`` says)."""
        parts = 2 if self.cell == "lstm" else 1
        weight = self.rnn.weight_hh_l0
        return torch.zeros(parts, self.num_layers, batch, self.out_features, device=device or weight.device,
                           dtype=weight.dtype)

    def _run(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cell == "lstm":
            out, (h, c) = self.rnn(x, (state[0].contiguous(), state[1].contiguous()))
            return out, torch.stack((h, c))
        out, h = self.rnn(x, state[0].contiguous())
        return out, h.unsqueeze(0)

    def forward(self, x: torch.Tensor, state: torch.Tensor, episode_starts: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (T, B, F), ``state`` (parts, layers, B, H) before step 0, ``episode_starts`` (T, B): 1 where step t
        begins a new episode, so the state entering it is zeroed. Returns the outputs (T, B, H) and the state after
        the last step.

        The sequence runs in one call per stretch between resets (not one call per step): only the steps where
        some sequence restarts split it."""
        if episode_starts is None:
            return self._run(x, state)
        starts = episode_starts.to(x.dtype)
        cuts = [0, *(t for t in torch.nonzero(starts.any(dim=1) if starts.ndim > 1 else starts).flatten().tolist()
                     if t > 0), x.shape[0]]
        outputs = []
        for begin, end in zip(cuts[:-1], cuts[1:]):
            state = state * (1.0 - starts[begin]).view(1, 1, -1, 1)
            out, state = self._run(x[begin:end], state)
            outputs.append(out)
        return torch.cat(outputs), state


class SequenceClassifier(nn.Module):
    """Classify an image read as a sequence of rows (row-by-row MNIST: 28 steps of 28 pixels) with an LSTM or GRU;
    the logits come from the last layer's output after the last row.

    Args:
        num_classes: outputs.
        in_channels: image channels (a step sees one row of every channel).
        image_size: the image's width (pixels per row).
        hidden: recurrent units.
        cell: ``lstm`` or ``gru``.
        num_layers: stacked recurrent layers.
        dropout: on the last output before the linear head.
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: int, hidden: int = 128, cell: str = "lstm",
                 num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.core = RecurrentCore(in_channels * image_size, hidden, cell, num_layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, C, H, W) -> logits (B, classes); row h of every channel is step h."""
        rows = images.permute(2, 0, 1, 3).flatten(2)  # (H, B, C*W): time-major
        out, _ = self.core(rows, self.core.initial_state(images.shape[0], images.device))
        return self.fc(self.dropout(out[-1]))
