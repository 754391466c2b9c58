"""Deep Q-learning and its family: DQN (Mnih et al. 2015), Double DQN (van Hasselt et al. 2016), Dueling DQN
(Wang et al. 2016), Bootstrapped DQN (Osband et al. 2016), with prioritized replay (Schaul et al. 2016) and
n-step returns as options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.agents.base import Agent, ReplayConfig
from rlkit.buffers import Batch, ReplaySpec
from rlkit.config import COUNT, DISCOUNT, NON_NEGATIVE, POSITIVE, UNIT, Bound, Constraint, OneOf
from rlkit.envs import Family
from rlkit.errors import UserError
from rlkit.nets import BootstrappedQHeads, DuelingQHead, QHead, make_encoder
from rlkit.optim import linear_schedule, make_adam, optimizer_step, polyak_update


@dataclass
class DQNConfig(ReplayConfig):
    """DQN hyperparameters. Defaults are the Atari values of Mnih et al. (2015) as used by CleanRL."""

    learning_rate: float = 1e-4
    """Adam learning rate."""
    batch_size: int = 32
    """Transitions per update."""
    learning_starts: int = 80_000
    """Env steps of experience collected before the first update.
    A run shorter than the preset's budget gets at most 5% of its steps (or the preset's share, if larger)
    unless a flag or --config sets it."""
    train_frequency: int = 4
    """Env steps between training phases."""
    target_update_interval: int = 1_000
    """Env steps between target network updates."""
    tau: float = 1.0
    """Target update rate: 1 copies the online network, < 1 moves the target by that fraction (Polyak)."""
    start_e: float = 1.0
    """Initial exploration epsilon."""
    end_e: float = 0.01
    """Final exploration epsilon."""
    exploration_fraction: float = 0.10
    """Fraction of the total steps over which epsilon decays linearly."""
    eval_epsilon: float = 0.05
    """Epsilon when evaluating (Atari convention: 0.05, so a policy cannot stall a game forever)."""
    max_grad_norm: float = 10.0
    """Clip the global gradient norm to this (0 disables)."""
    huber_delta: float = 1.0
    """Huber loss threshold: squared error below it, absolute error above (Mnih et al.'s error clipping)."""
    hidden: tuple[int, ...] = (256, 256)
    """MLP encoder widths for vector observations (image stacks use the Nature CNN)."""
    encoder: str = "auto"
    """auto: Nature CNN for image stacks, MLP for vectors; or nature-cnn, mlp, resnet (the course's 12-block
    ResNet at half width, for image stacks)."""
    double: bool = False
    """Double DQN target: the online network picks the next action, the target network values it."""
    dueling: bool = False
    """Dueling head: Q = V + A - mean(A)."""
    bootstrapped: bool = False
    """Bootstrapped DQN: K heads on a shared torso, one head acts per episode, the ensemble votes in evaluation."""
    num_heads: int = 10
    """Number of bootstrapped heads K."""
    bootstrap_prob: float = 0.5
    """Probability that a transition is shown to a given head (the Bernoulli mask stored in replay)."""
    prioritized: bool = False
    """Prioritized replay with proportional priorities |TD error|."""
    priority_alpha: float = 0.6
    """Priority exponent alpha."""
    priority_beta: float = 0.4
    """Initial importance-sampling exponent beta, annealed to 1 over the run."""
    n_step: int = 1
    """Steps summed in the return before bootstrapping."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "learning_rate": POSITIVE, "target_update_interval": COUNT, "tau": DISCOUNT, "start_e": UNIT,
        "end_e": UNIT, "exploration_fraction": UNIT, "eval_epsilon": UNIT, "max_grad_norm": NON_NEGATIVE,
        "huber_delta": POSITIVE, "hidden": COUNT, "encoder": OneOf(("auto", "nature-cnn", "mlp", "resnet")),
        "num_heads": COUNT, "bootstrap_prob": DISCOUNT, "priority_alpha": NON_NEGATIVE, "priority_beta": UNIT,
        "n_step": Bound(1, 1_000),  # the n-step return is summed in a loop over n at every sample
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bootstrapped and self.dueling:
            raise UserError("bootstrapped DQN has no dueling head (its heads are plain Q heads): drop --dueling or "
                            "--bootstrapped")


# Env family -> config changes and run defaults (num_envs, total_steps).
PRESETS: dict[Family, dict[str, Any]] = {
    # Nature DQN as in CleanRL: the config's defaults.
    "atari": {"num_envs": 1, "total_steps": 10_000_000},
    # Envs without a file of their own in rlkit/hyperparams/dqn.yml (CartPole, Acrobot, MountainCar and LunarLander
    # have one): rl-baselines3-zoo's one set tuned for both Acrobot-v1 and LunarLander-v3, one update per env step.
    # CartPole's tuned values (128 updates every 256 steps, target copied every 10) were the default before and are
    # too particular to CartPole to stand for the family.
    "other": {"learning_rate": 6.3e-4, "buffer_size": 50_000, "batch_size": 128, "learning_starts": 0,
              "train_frequency": 4, "gradient_steps": 4, "target_update_interval": 250, "end_e": 0.1,
              "exploration_fraction": 0.12, "eval_epsilon": 0.0, "hidden": (256, 256),
              "num_envs": 1, "total_steps": 100_000},
}


# Agent names that select DQN variants: name -> config changes.
VARIANTS: dict[str, dict[str, Any]] = {
    "dqn": {},
    "double-dqn": {"double": True},
    "dueling-dqn": {"dueling": True, "double": True},  # Wang et al. evaluate the dueling head with double targets
    "bootstrapped-dqn": {"bootstrapped": True, "start_e": 0.0, "end_e": 0.0},  # heads explore, not epsilon
}


class QNetwork(nn.Module):
    """Encoder + Q head(s): ``(B, *obs) -> (B, K, A)``, K bootstrapped heads or K = 1."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, config: DQNConfig):
        super().__init__()
        self.n_actions = n_actions
        images = len(obs_shape) == 3
        if config.bootstrapped:
            # Osband et al.: the heads share the convolutions, each head has its own 512-unit layer.
            self.encoder = make_encoder(obs_shape, config.encoder, hidden=config.hidden,
                                        cnn_features=0 if images else 512)
            self.head: nn.Module = BootstrappedQHeads(self.encoder.out_features, n_actions, config.num_heads,
                                                      hidden=512 if images else 0)
        elif config.dueling:
            # Wang et al.: value and advantage streams split after the convolutions, each with its own 512-unit
            # layer; on vectors they split before the last hidden layer, each stream taking one of that width.
            torso, stream = (config.hidden, 512) if images else (config.hidden[:-1], (config.hidden or (0,))[-1])
            self.encoder = make_encoder(obs_shape, config.encoder, hidden=torso, cnn_features=0)
            self.head = DuelingQHead(self.encoder.out_features, n_actions, hidden=stream)
        else:
            self.encoder = make_encoder(obs_shape, config.encoder, hidden=config.hidden)
            self.head = QHead(self.encoder.out_features, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        q = self.head(self.encoder(obs))  # (B, A) or (B, K, A)
        return q.view(len(q), -1, self.n_actions)


class DQN(Agent):
    """Q-learning with a target network, replay and epsilon-greedy exploration, and the options above.

    Every Q tensor is ``(B, K, A)``: K bootstrapped heads, or K = 1, so one code path serves both.
    """

    config_class = DQNConfig
    action_spaces = (gym.spaces.Discrete,)
    source_kind = "replay"

    def __init__(
        self,
        config: DQNConfig,
        obs_space: gym.Space,
        action_space: gym.Space,
        device: str | torch.device = "cpu",
        total_steps: int = 10_000_000,
        seed: int | None = None,
    ):
        super().__init__(config, obs_space, action_space, device, total_steps, seed)
        self.n_actions = int(action_space.n)
        self.num_heads = config.num_heads if config.bootstrapped else 1
        self.q_net = QNetwork(obs_space.shape, self.n_actions, config).to(self.device)
        self.target_net = QNetwork(obs_space.shape, self.n_actions, config).to(self.device)
        self.target_net.load_state_dict(self.q_net.state_dict())
        self.target_net.requires_grad_(False)
        self.optimizer = make_adam(self.q_net.parameters(), config.learning_rate, self.device)
        self.updates = 0
        self.last_target_sync = 0
        self.active_heads = np.zeros(0, dtype=np.int64)  # the head each sub-env follows in this episode

    # ------------------------------------------------------------------ acting
    @property
    def epsilon(self) -> float:
        c = self.config
        return linear_schedule(c.start_e, c.end_e, int(c.exploration_fraction * self.total_steps), self.step)

    def episode_start(self, mask: np.ndarray) -> None:
        """Each sub-env follows one head for a whole episode, drawn when the episode starts (Osband et al.)."""
        if len(self.active_heads) != len(mask):
            self.active_heads = np.zeros(len(mask), dtype=np.int64)
            mask = np.ones(len(mask), dtype=bool)
        self.active_heads[mask] = self.rng.integers(0, self.num_heads, int(mask.sum()))  # K = 1: draws nothing

    def act(self, obs: np.ndarray, explore: bool = False, deterministic: bool = True) -> np.ndarray:
        """Epsilon-greedy: the schedule's epsilon with ``explore``, else ``eval_epsilon`` (``deterministic`` has no
        further effect: a Q-learner's evaluation policy is its epsilon-greedy one)."""
        n = len(obs)
        epsilon, rng = (self.epsilon, self.rng) if explore else (self.config.eval_epsilon, self.eval_rng)
        random = rng.random(n) < epsilon
        actions = rng.integers(0, self.n_actions, n)
        if random.all():  # nothing to compute: early exploration is pure env stepping
            return actions
        with torch.inference_mode():
            q = self.q_net(torch.as_tensor(obs, device=self.device))  # (B, K, A)
            if explore:  # each sub-env acts greedily for its episode's head
                if len(self.active_heads) != n:
                    self.episode_start(np.ones(n, dtype=bool))
                greedy = q[torch.arange(n), torch.as_tensor(self.active_heads, device=self.device)].argmax(-1)
            else:  # the heads' majority vote (with K = 1, the greedy action)
                greedy = F.one_hot(q.argmax(-1), self.n_actions).sum(1).argmax(-1)
        return np.where(random, actions, greedy.cpu().numpy())

    # ------------------------------------------------------------------ learning
    def buffer_spec(self) -> ReplaySpec:
        """The replay memory this configuration asks for."""
        c = self.config
        action_dtype = np.uint8 if self.n_actions <= 256 else np.int64
        return ReplaySpec(
            c.buffer_size, self.obs_space.shape, self.obs_space.dtype, (), action_dtype, n_step=c.n_step,
            gamma=c.gamma, prioritized=c.prioritized, alpha=c.priority_alpha, beta=c.priority_beta,
            beta_steps=self.total_steps, bootstrap_heads=c.num_heads if c.bootstrapped else 0,
            bootstrap_prob=c.bootstrap_prob,
        )

    def td_target(self, batch: Batch) -> torch.Tensor:
        """``r + gamma^m (1 - terminated) max_a' Q_target(s', a')`` per head, (B, K): each head bootstraps from its
        own target head; double DQN lets the online head pick a' and the target head value it."""
        with torch.no_grad():
            next_q = self.target_net(batch.next_obs)  # (B, K, A)
            if self.config.double:
                next_actions = self.q_net(batch.next_obs).argmax(-1, keepdim=True)
                next_value = next_q.gather(-1, next_actions).squeeze(-1)
            else:
                next_value = next_q.max(-1).values
            not_done = batch.discounts * (1.0 - batch.terminated)
            return batch.rewards[:, None] + not_done[:, None] * next_value

    def update(self, batch: Batch) -> dict[str, float]:
        if self.step - self.last_target_sync >= self.config.target_update_interval:
            self.sync_target()  # before the update, so a burst of updates shares one target (as in SB3)
        td_target = self.td_target(batch)  # (B, K)
        actions = batch.actions.view(-1, 1, 1).expand(-1, self.num_heads, 1)
        q = self.q_net(batch.obs).gather(-1, actions).squeeze(-1)  # (B, K)
        loss_per_head = F.huber_loss(q, td_target, reduction="none", delta=self.config.huber_delta)
        # Each head learns only from the transitions its mask shows it (K = 1: all of them); dividing by K
        # normalizes the gradient reaching the shared torso (Osband et al. 2016).
        loss = (batch.weights * (loss_per_head * batch.masks).sum(-1) / self.num_heads).mean()
        grad_norm = optimizer_step(self.optimizer, loss, self.q_net.parameters(), self.config.max_grad_norm)
        self.updates += 1

        if batch.update_priorities is not None:
            batch.update_priorities((td_target - q).detach().abs().mean(-1))
        return {"losses/td_loss": loss.item(), "losses/q_values": q.mean().item(), "losses/grad_norm": grad_norm,
                "charts/epsilon": self.epsilon}

    def sync_target(self) -> None:
        """Move the target network toward the online one by ``tau`` (a copy when tau = 1)."""
        polyak_update(self.target_net, self.q_net, self.config.tau)
        self.last_target_sync = self.step

    # ------------------------------------------------------------------ saving
    def state_dict(self) -> dict[str, Any]:
        return {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counters": {"updates": self.updates, "last_target_sync": self.last_target_sync},
            "rng": self.rng.bit_generator.state,
            "active_heads": torch.as_tensor(self.active_heads),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["counters"]["updates"]
        self.last_target_sync = state["counters"]["last_target_sync"]
        self.rng.bit_generator.state = state["rng"]
        self.active_heads = state["active_heads"].numpy().copy()
