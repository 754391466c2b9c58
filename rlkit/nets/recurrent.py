"""Recurrent cores (LSTM and GRU) shared by sequence classifiers and recurrent policies.

A core's state is one tensor, ``(2, layers, B, hidden)`` for an LSTM (h and c stacked) and ``(1, layers, B, hidden)``
for a GRU, so buffers and checkpoints store either kind the same way.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rlkit.nets.encoders import UnitScaleFlatten, encoder_kind, make_encoder
from rlkit.nets.policies import ACTIVATIONS, ValueHead, orthogonal_init, policy_head

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


class RecurrentActorCritic(nn.Module):
    """:class:`~rlkit.nets.policies.ActorCritic` with a recurrent core in each branch (an LSTM of its own for the
    critic unless the branches are shared), laid out as the reference implementations are: on vector observations
    the core reads the observation and the MLP of ``hidden`` widths follows it (sb3-contrib's MlpLstmPolicy); on
    images the Nature CNN comes first and the heads read the core (CleanRL's ppo_atari_lstm).

    Every method takes observations as rows that are time-major over ``S`` sequences (row ``t * S + s``; one step of
    ``S`` sub-envs is just ``S`` rows), the memory before the first of those steps ``(parts, layers, S, hidden)`` and
    ``episode_starts`` per row (1: the memory entering that step is zeroed).

    Args:
        obs_shape, action_space, hidden, activation, shared, log_std_init: as :class:`ActorCritic`.
        cell: ``lstm`` or ``gru``.
        recurrent_hidden: units of each core.
    """

    def __init__(self, obs_shape, action_space, hidden=(64, 64), activation: str = "tanh", shared: bool = False,
                 log_std_init: float = 0.0, cell: str = "lstm", recurrent_hidden: int = 256):
        super().__init__()
        act = ACTIVATIONS[activation]
        images = encoder_kind(obs_shape) != "mlp"  # small images are flattened like vectors

        def branch() -> tuple[nn.Module, RecurrentCore, nn.Module]:
            torso = make_encoder(obs_shape, activation=act) if images else UnitScaleFlatten()
            width = torso.out_features if images else math.prod(obs_shape)
            core = RecurrentCore(width, recurrent_hidden, cell)
            after = nn.Identity() if images else make_encoder((recurrent_hidden,), hidden=hidden, activation=act)
            return torso, core, after

        self.actor_torso, self.actor_core, self.actor_mlp = branch()
        if shared:
            self.critic_torso, self.critic_core, self.critic_mlp = self.actor_torso, self.actor_core, self.actor_mlp
        else:
            self.critic_torso, self.critic_core, self.critic_mlp = branch()
        width = recurrent_hidden if images else self.actor_mlp.out_features
        self.policy_head = policy_head(width, action_space, log_std_init)
        self.value_head = ValueHead(width)
        self.shared = shared
        orthogonal_init(self)

    def initial_memory(self, batch: int) -> torch.Tensor:
        """Zero memory for ``batch`` sequences: the actor core's state, then the critic core's unless shared."""
        state = self.actor_core.initial_state(batch)
        return state if self.shared else torch.cat([state, self.critic_core.initial_state(batch)])

    def _split(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(actor's state, critic's state): the same tensor when the core is shared."""
        if self.shared:
            return memory, memory
        parts = memory.shape[0] // 2
        return memory[:parts], memory[parts:]

    @staticmethod
    def _through(torso: nn.Module, core: RecurrentCore, after: nn.Module, obs: torch.Tensor, state: torch.Tensor,
                 episode_starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sequences = state.shape[2]
        features = torso(obs)  # every row at once: only the core needs the time order
        out, state = core(features.view(-1, sequences, features.shape[-1]), state,
                          episode_starts.view(-1, sequences))
        return after(out.reshape(-1, out.shape[-1])), state

    def _actor(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor):
        return self._through(self.actor_torso, self.actor_core, self.actor_mlp, obs, state, starts)

    def _critic(self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor):
        return self._through(self.critic_torso, self.critic_core, self.critic_mlp, obs, state, starts)

    def forward(self, obs: torch.Tensor, memory: torch.Tensor, episode_starts: torch.Tensor):
        """(action distribution, values (rows,), memory after the last step)."""
        actor_memory, critic_memory = self._split(memory)
        features, actor_memory = self._actor(obs, actor_memory, episode_starts)
        if self.shared:
            return self.policy_head(features), self.value_head(features), actor_memory
        critic_features, critic_memory = self._critic(obs, critic_memory, episode_starts)
        return (self.policy_head(features), self.value_head(critic_features),
                torch.cat([actor_memory, critic_memory]))

    def sample(self, obs: torch.Tensor, memory: torch.Tensor, episode_starts: torch.Tensor):
        """One step: sampled actions, their log-probs, V(s) and the memory after the step."""
        dist, values, memory = self(obs, memory, episode_starts)
        actions = dist.sample()
        return actions, dist.log_prob(actions), values, memory

    def distribution(self, obs: torch.Tensor, memory: torch.Tensor, episode_starts: torch.Tensor):
        """The action distribution and the actor's memory after the step (the critic's part left as it was)."""
        actor_memory, critic_memory = self._split(memory)
        features, actor_memory = self._actor(obs, actor_memory, episode_starts)
        return self.policy_head(features), (actor_memory if self.shared
                                            else torch.cat([actor_memory, critic_memory]))

    def value(self, obs: torch.Tensor, memory: torch.Tensor, episode_starts: torch.Tensor) -> torch.Tensor:
        """V(s) of the rows (the memory is not advanced)."""
        _, critic_memory = self._split(memory)
        features, _ = self._critic(obs, critic_memory, episode_starts)
        return self.value_head(features)
