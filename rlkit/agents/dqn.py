"""Deep Q-learning and its family: DQN (Mnih et al. 2015), Double DQN (van Hasselt et al. 2016), Dueling DQN
(Wang et al. 2016), Bootstrapped DQN (Osband et al. 2016), distributional C51 (Bellemare et al. 2017) and Rainbow
(Hessel et al. 2018), with prioritized replay (Schaul et al. 2016), n-step returns, noisy nets (Fortunato et al.
2018) and random-shift augmentation of frames (DrQ, Kostrikov et al. 2020) as options."""

from __future__ import annotations

from dataclasses import dataclass
from contextlib import nullcontext
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.agents.base import Agent, ReplayConfig
from rlkit.agents.distributional import categorical_projection, cross_entropy, kl_divergence
from rlkit.buffers import Batch, ReplaySpec
from rlkit.config import COUNT, DISCOUNT, FINITE, NON_NEGATIVE, POSITIVE, UNIT, Bound, Constraint, OneOf
from rlkit.envs import Family
from rlkit.errors import UserError
from rlkit.nets import (BootstrappedQHeads, DuelingQHead, QHead, make_encoder, noise_off, random_shift,
                        reset_noise)
from rlkit.nets.encoders import ENCODERS, encoder_kind
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
    """auto: Nature CNN for image stacks of at least 36x36 pixels, MLP for vectors and smaller images; or
    nature-cnn, der-cnn (the data-efficient Rainbow's two 5x5/5 convolutions, van Hasselt et al. 2019), mlp, resnet
    (the course's 12-block ResNet at half width, for image stacks)."""
    cnn_hidden: int = 512
    """Units of the fully connected layer after the convolutions (image observations; each dueling stream has its
    own)."""
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
    distributional: bool = False
    """C51: learn a categorical distribution of the return on num_atoms fixed atoms from v_min to v_max, with the
    projected Bellman target and a cross-entropy loss (with prioritized replay: the KL is the priority)."""
    num_atoms: int = 51
    """Atoms of the distributional support."""
    v_min: float = -10.0
    """Lowest atom of the support (returns below it count as it)."""
    v_max: float = 10.0
    """Highest atom of the support."""
    noisy: bool = False
    """Noisy nets: the head's linear layers get learned factorised Gaussian noise, resampled at every action and
    update; evaluation uses the means. The noise explores, so pair it with --start-e 0 --end-e 0 (rainbow does)."""
    noisy_std: float = 0.5
    """sigma_0 of the noisy layers: the noise scale is sigma_0 / sqrt(inputs) at initialization."""
    augment: str = "none"
    """none, or shift: DrQ's random shift of image observations (pad by augment_pad repeating the border, random
    crop back), drawn independently for the online and the target network's inputs at every update."""
    augment_pad: int = 4
    """Pixels of the random shift's padding."""
    adam_eps: float = 1e-8
    """Adam's epsilon (Rainbow and the data-efficient agents use 1.5e-4, C51 0.01 / 32)."""

    CHECKS: ClassVar[dict[str, Constraint]] = {
        "learning_rate": POSITIVE, "target_update_interval": COUNT, "tau": DISCOUNT, "start_e": UNIT,
        "end_e": UNIT, "exploration_fraction": UNIT, "eval_epsilon": UNIT, "max_grad_norm": NON_NEGATIVE,
        "huber_delta": POSITIVE, "hidden": COUNT, "encoder": OneOf(ENCODERS), "cnn_hidden": COUNT,
        "num_heads": COUNT, "bootstrap_prob": DISCOUNT, "priority_alpha": NON_NEGATIVE, "priority_beta": UNIT,
        "n_step": Bound(1, 1_000),  # the n-step return is summed in a loop over n at every sample
        "num_atoms": Bound(2, 10_000), "noisy_std": POSITIVE, "augment": OneOf(("none", "shift")),
        "augment_pad": Bound(0, 64), "adam_eps": POSITIVE, "v_min": FINITE, "v_max": FINITE,
    }
    READ_ONLY_WITH: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {
        "num_heads": ("bootstrapped", (True,)), "bootstrap_prob": ("bootstrapped", (True,)),
        "priority_alpha": ("prioritized", (True,)), "priority_beta": ("prioritized", (True,)),
        **{name: ("distributional", (True,)) for name in ("num_atoms", "v_min", "v_max")},
        "noisy_std": ("noisy", (True,)), "augment_pad": ("augment", ("shift",)),
    }
    """Fields read only with another one's value (:func:`rlkit.config.refuse_unread_flags`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bootstrapped and self.dueling:
            raise UserError("bootstrapped DQN has no dueling head (its heads are plain Q heads): drop --dueling or "
                            "--bootstrapped")
        if self.bootstrapped and (self.distributional or self.noisy):
            raise UserError("bootstrapped DQN's heads are plain Q heads: drop --bootstrapped, or --distributional "
                            "and --noisy")
        if self.distributional and not self.v_min < self.v_max:
            raise UserError(f"--v-min {self.v_min} must be below --v-max {self.v_max}: the atoms run from one to the "
                            "other")


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


# C51: its Atari values as CleanRL's c51_atari.py has them (Bellemare et al.'s, with the Nature DQN schedule).
C51_PRESETS: dict[Family, dict[str, Any]] = {
    "atari": {"learning_rate": 2.5e-4, "adam_eps": 0.01 / 32, "target_update_interval": 10_000,
              "num_envs": 1, "total_steps": 10_000_000},
    # DQN's family default with the support CleanRL's c51.py uses on classic control: rewards of about 1 per step
    # and gamma 0.99 keep returns within +-100.
    "other": {**PRESETS["other"], "num_atoms": 101, "v_min": -100.0, "v_max": 100.0},
}

# Rainbow: Hessel et al. (2018), Table 1 (frames converted to agent steps at frame skip 4).
RAINBOW_PRESETS: dict[Family, dict[str, Any]] = {
    "atari": {"learning_rate": 6.25e-5, "adam_eps": 1.5e-4, "learning_starts": 20_000,
              "target_update_interval": 8_000, "n_step": 3, "priority_alpha": 0.5, "priority_beta": 0.4,
              "noisy_std": 0.5, "num_envs": 1, "total_steps": 10_000_000},
    "other": {**C51_PRESETS["other"], "n_step": 3, "priority_alpha": 0.5},
}

# Agent names that select DQN variants: name -> config changes.
VARIANTS: dict[str, dict[str, Any]] = {
    "dqn": {},
    "double-dqn": {"double": True},
    "dueling-dqn": {"dueling": True, "double": True},  # Wang et al. evaluate the dueling head with double targets
    "bootstrapped-dqn": {"bootstrapped": True, "start_e": 0.0, "end_e": 0.0},  # heads explore, not epsilon
    "c51": {"distributional": True},
    # All six of Rainbow's parts; the noisy layers explore, not epsilon.
    "rainbow": {"distributional": True, "noisy": True, "dueling": True, "double": True, "prioritized": True,
                "start_e": 0.0, "end_e": 0.0},
}


class QNetwork(nn.Module):
    """Encoder + Q head(s): ``(B, *obs) -> (B, K, A)``, K bootstrapped heads or K = 1.

    Distributional, it computes the logits of each action's return distribution (:meth:`log_probs`) and returns
    their expectations as Q. Noisy or dueling, the head owns the last hidden layer (the 512 units after the Atari
    convolutions), so that layer is noisy or split into streams as the papers have it.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, config: DQNConfig):
        super().__init__()
        self.n_actions = n_actions
        self.distributional = config.distributional
        atoms = config.num_atoms if config.distributional else 1
        noisy_std = config.noisy_std if config.noisy else 0.0
        images = encoder_kind(obs_shape, config.encoder) != "mlp"  # small images are flattened
        # The torso and the width of the layer the head owns, when it owns one.
        cnn = config.cnn_hidden
        torso, stream = (config.hidden, cnn) if images else (config.hidden[:-1], (config.hidden or (0,))[-1])
        if config.bootstrapped:
            # Osband et al.: the heads share the convolutions, each head has its own 512-unit (cnn_hidden) layer.
            self.encoder = make_encoder(obs_shape, config.encoder, hidden=config.hidden,
                                        cnn_features=0 if images else cnn)
            self.head: nn.Module = BootstrappedQHeads(self.encoder.out_features, n_actions, config.num_heads,
                                                      hidden=cnn if images else 0)
        elif config.dueling:
            # Wang et al.: value and advantage streams split after the convolutions, each with its own 512-unit
            # (cnn_hidden) layer; on vectors they split before the last hidden layer, each stream taking one of that
            # width.
            self.encoder = make_encoder(obs_shape, config.encoder, hidden=torso, cnn_features=0)
            self.head = DuelingQHead(self.encoder.out_features, n_actions, hidden=stream, atoms=atoms,
                                     noisy_std=noisy_std)
        elif config.noisy:
            self.encoder = make_encoder(obs_shape, config.encoder, hidden=torso, cnn_features=0)
            self.head = QHead(self.encoder.out_features, n_actions, atoms, hidden=stream, noisy_std=noisy_std)
        else:
            self.encoder = make_encoder(obs_shape, config.encoder, hidden=config.hidden, cnn_features=cnn)
            self.head = QHead(self.encoder.out_features, n_actions, atoms)
        self.register_buffer("support", torch.linspace(config.v_min, config.v_max, atoms), persistent=False)

    def log_probs(self, obs: torch.Tensor) -> torch.Tensor:
        """Distributional: ``(B, A, N)`` log-probabilities of the N atoms for every action."""
        return self.head(self.encoder(obs)).log_softmax(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.distributional:
            return (self.log_probs(obs).exp() * self.support).sum(-1).unsqueeze(1)  # expected return, (B, 1, A)
        q = self.head(self.encoder(obs))  # (B, A) or (B, K, A)
        return q.view(len(q), -1, self.n_actions)


APEX_EPSILON, APEX_ALPHA = 0.4, 7.0
"""Ape-X's per-actor exploration: epsilon_i = APEX_EPSILON ** (1 + APEX_ALPHA * i / (N - 1)) (Horgan et al. 2018)."""


class DQN(Agent):
    """Q-learning with a target network, replay and epsilon-greedy exploration, and the options above.

    Every Q tensor is ``(B, K, A)``: K bootstrapped heads, or K = 1, so one code path serves both.
    """

    config_class = DQNConfig
    action_spaces = (gym.spaces.Discrete,)
    source_kind = "replay"
    remote_actors = True

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
        self.optimizer = make_adam(self.q_net.parameters(), config.learning_rate, self.device, eps=config.adam_eps)
        if config.augment != "none" and len(obs_space.shape) != 3:
            raise UserError(f"--augment {config.augment} shifts image observations; this env's are "
                            f"{obs_space.shape}: drop --augment")
        self.updates = 0
        self.last_target_sync = 0
        self.actor_epsilon: float | None = None  # a remote actor's fixed epsilon (Ape-X), else the schedule's
        self.active_heads = np.zeros(0, dtype=np.int64)  # the head each sub-env follows in this episode

    # ------------------------------------------------------------------ acting
    @property
    def epsilon(self) -> float:
        c = self.config
        if self.actor_epsilon is not None:
            return self.actor_epsilon
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
        if explore and self.config.noisy:
            reset_noise(self.q_net)  # a new noise sample per action
        with torch.inference_mode(), (nullcontext() if explore else noise_off(self.q_net)):
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

    def target_distribution(self, batch: Batch) -> torch.Tensor:
        """C51's target, (B, N): the target network's return distribution at ``(s', a*)`` shifted by the n-step
        reward and discount and projected back onto the atoms; a* is greedy on the expected return (double: the
        online network picks it)."""
        with torch.no_grad():
            next_probs = self.target_net.log_probs(batch.next_obs).exp()  # (B, A, N)
            chooser = self.q_net(batch.next_obs)[:, 0] if self.config.double else (next_probs * self.support).sum(-1)
            chosen = next_probs[torch.arange(len(next_probs)), chooser.argmax(-1)]  # (B, N)
            not_done = batch.discounts * (1.0 - batch.terminated)
            return categorical_projection(chosen, batch.rewards, not_done, self.support)

    def augmented(self, batch: Batch) -> Batch:
        """DrQ: the online and the target inputs each get their own random shift."""
        if self.config.augment == "none":
            return batch
        pad = self.config.augment_pad
        return batch._replace(obs=random_shift(batch.obs, pad), next_obs=random_shift(batch.next_obs, pad))

    def update(self, batch: Batch) -> dict[str, float]:
        if self.step - self.last_target_sync >= self.config.target_update_interval:
            self.sync_target()  # before the update, so a burst of updates shares one target (as in SB3)
        batch = self.augmented(batch)
        if self.config.noisy:  # fresh noise for the online and the target network
            reset_noise(self.q_net)
            reset_noise(self.target_net)
        if self.config.distributional:
            return self.distributional_update(batch)
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

    def distributional_update(self, batch: Batch) -> dict[str, float]:
        """C51: cross-entropy between the projected target and the taken action's predicted distribution."""
        target = self.target_distribution(batch)  # (B, N)
        log_probs = self.q_net.log_probs(batch.obs)[torch.arange(len(target)), batch.actions]  # (B, N)
        loss = (batch.weights * cross_entropy(target, log_probs)).mean()
        grad_norm = optimizer_step(self.optimizer, loss, self.q_net.parameters(), self.config.max_grad_norm)
        self.updates += 1

        if batch.update_priorities is not None:
            batch.update_priorities(kl_divergence(target, log_probs.detach()))  # Rainbow's priority: the KL
        q = (log_probs.detach().exp() * self.support).sum(-1)
        return {"losses/td_loss": loss.item(), "losses/q_values": q.mean().item(), "losses/grad_norm": grad_norm,
                "charts/epsilon": self.epsilon}

    @property
    def support(self) -> torch.Tensor:
        """The atoms of the return distribution, (N,)."""
        return self.q_net.support

    def sync_target(self) -> None:
        """Move the target network toward the online one by ``tau`` (a copy when tau = 1)."""
        polyak_update(self.target_net, self.q_net, self.config.tau)
        self.last_target_sync = self.step

    # ------------------------------------------------------------------ saving
    def use_actor_exploration(self, index: int, count: int) -> None:
        """Actor i of N explores with epsilon_i = 0.4 ** (1 + 7 i / (N - 1)) for its whole life (Horgan et al.
        2018, Ape-X), so some actors explore a lot and others barely; noisy nets and bootstrapped heads keep their
        own exploration."""
        if self.config.noisy or self.config.bootstrapped:
            return
        self.actor_epsilon = APEX_EPSILON ** (1 + APEX_ALPHA * index / (count - 1)) if count > 1 else APEX_EPSILON

    def acting_state(self) -> dict[str, Any]:
        return {"q_net": self.q_net.state_dict()}

    def load_acting_state(self, state: dict[str, Any]) -> None:
        self.q_net.load_state_dict(state["q_net"])

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
