"""ACGAN with a Wasserstein critic and gradient penalty (assignment 5b) as a learner of the shared loop.

One :class:`~rlkit.nets.gan.Discriminator` is both the critic (``fc1``) and the auxiliary classifier (``fc10``,
Odena et al. 2017); its loss is the WGAN-GP one (Gulrajani et al. 2017) plus cross-entropy on real and generated
images. The generator gets the class as a one-hot in the first entries of its noise vector (the course's
convention) and is trained to raise the critic's score and to be classified as that class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlkit.optim import make_adam, optimizer_step
from rlkit.errors import UserError
from rlkit.nets.gan import Discriminator, DiscriminatorAsClassifier, Generator

__all__ = ["ACGAN", "ACGANConfig", "DiscriminatorAsClassifier", "class_conditional_accuracy", "generate",
           "gradient_penalty", "make_noise", "save_samples"]


@dataclass
class ACGANConfig:
    """ACGAN-WGAN-GP hyperparameters; defaults are the course's (its training template for CIFAR-10) and, where it
    follows them, Gulrajani et al.'s."""

    epochs: int = 200
    """Passes over the training set (the course's template trains 200; its tutorial mentions 500)."""
    batch_size: int = 128
    """Real images per update (the course's template)."""
    learning_rate: float = 1e-4
    """Adam learning rate of both networks (WGAN-GP's and the course's)."""
    betas: tuple[float, float] = (0.0, 0.9)
    """Adam betas of both networks: no first-moment averaging, as WGAN-GP prescribes."""
    gp_weight: float = 10.0
    """Gradient-penalty coefficient lambda (WGAN-GP's 10)."""
    class_weight: float = 1.0
    """Scale of the critic's class cross-entropy (see ``fake_class_loss``) against its Wasserstein loss (1: the course's
    and Odena et al.'s sum; Gulrajani et al.'s ACGAN code calls it ACGAN_SCALE). Early on, the Wasserstein gradient
    dominates the shared trunk and the class head learns slowly; a larger scale speeds up conditioning."""
    fake_class_loss: bool = True
    """Train the critic's class head on generated images (with the labels they were asked for) as well as on real
    ones: the course's and Odena et al.'s ACGAN. Off: real images only, as Gulrajani et al.'s ACGAN code does; the
    critic can then not learn to accept the generator's images as their classes, whatever they look like."""
    generator_class_weight: float = 1.0
    """Scale of the generator's class cross-entropy against its critic score (ACGAN_SCALE_G there)."""
    critic_steps: int = 1
    """Critic updates per generator update. The course's template uses 1 (its ``gen_train``, noting 5 as an
    option); WGAN-GP's paper uses 5 (n_critic)."""
    noise_dim: int = 128
    """Length of the generator's input; its first ``num_classes`` entries are the class one-hot (the
    assignment's 128)."""
    num_classes: int = 10
    """Classes of the auxiliary classifier and of the conditioning (a ``train.py`` run takes them from its task)."""
    width: int = 196
    """Channels of every layer of both networks (the assignment's 196)."""
    sample_interval: int = 0
    """Updates between sample grids written to the run directory (0: once per epoch)."""

    def __post_init__(self) -> None:
        if self.critic_steps < 1 or self.batch_size < 1 or self.epochs < 1:
            raise UserError(f"--critic-steps, --batch-size and --epochs must be positive (got {self.critic_steps}, "
                            f"{self.batch_size}, {self.epochs})")
        if self.noise_dim < self.num_classes:
            raise UserError(f"--noise-dim {self.noise_dim} cannot hold the one-hot of {self.num_classes} classes: "
                            f"use at least {self.num_classes}")


def make_noise(labels: torch.Tensor, noise_dim: int, num_classes: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Generator input ``(B, noise_dim)`` for ``labels`` (B,): standard Gaussian noise whose first ``num_classes``
    entries are replaced by the one-hot of the label. Drawn on ``generator``'s device, returned on the labels'."""
    if noise_dim < num_classes:
        raise ValueError(f"noise_dim {noise_dim} < num_classes {num_classes}: no room for the one-hot")
    device = generator.device if generator is not None else labels.device
    z = torch.randn(len(labels), noise_dim, generator=generator, device=device).to(labels.device)
    z[:, :num_classes] = F.one_hot(labels, num_classes).to(z.dtype)
    return z


def gradient_penalty(critic_fn: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP's penalty ``mean_i (||grad_x D(x_hat_i)||_2 - 1)^2`` (without its weight lambda).

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample (drawn from ``generator``):
    points on the lines between real and generated images, where the optimal critic has gradient norm 1.
    ``critic_fn`` maps images (B, ...) to scores (B,); each score must depend on its own image only (no batch
    norm). The gradient is taken with ``create_graph=True`` so the penalty itself can be backpropagated.
    """
    device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), generator=generator, device=device).to(real)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    # Summing the scores gives each sample's own gradient, since score i depends on x_hat i alone.
    (grad,) = torch.autograd.grad(critic_fn(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


class ACGAN:
    """Two networks and two Adam optimizers; ``update`` is one critic step and, every ``critic_steps`` updates
    (after the k-th, 2k-th, ... critic step), one generator step.

    Args:
        config: the hyperparameters.
        in_channels, image_size: of the real images, which arrive in [-1, 1] (the generator's tanh range);
            ``image_size`` a multiple of 8 (pad 28x28 images to 32).
        device: where the networks live.
        seed: of the learner's own random generator (noise, fake labels, penalty points), kept in its state.
    """

    def __init__(self, config: ACGANConfig, in_channels: int = 3, image_size: int = 32,
                 device: str | torch.device = "cpu", seed: int = 0):
        if image_size % 8:
            raise UserError(f"the generator makes images of a multiple of 8 pixels, these have {image_size}: "
                            "pad them (e.g. 28 to 32)")
        self.config, self.device = config, torch.device(device)
        self.discriminator = Discriminator(config.num_classes, in_channels, image_size, config.width).to(self.device)
        self.generator = Generator(config.noise_dim, in_channels, config.width, image_size).to(self.device)
        self.critic_params = list(self.discriminator.parameters())
        self.generator_params = list(self.generator.parameters())
        self.critic_optimizer = make_adam(self.critic_params, config.learning_rate, self.device, betas=config.betas)
        self.generator_optimizer = make_adam(self.generator_params, config.learning_rate, self.device,
                                             betas=config.betas)
        self.rng = torch.Generator(self.device).manual_seed(seed)
        self.updates = 0

    def _noise(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(self.config.num_classes, (batch_size,), generator=self.rng, device=self.device)
        return make_noise(labels, self.config.noise_dim, self.config.num_classes, self.rng), labels

    def update(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """One critic step on ``batch`` = (real images (B, C, H, W) in [-1, 1], labels (B,)), and a generator
        step when it is due. ``losses/generator`` appears only on updates with a generator step."""
        real, labels = batch
        cfg, D, G = self.config, self.discriminator, self.generator
        D.train()
        G.train()
        B = len(labels)

        # Critic: minimise D(fake) - D(real) + lambda * GP, plus the auxiliary classifier's cross-entropy.
        z, fake_labels = self._noise(B)
        with torch.no_grad():
            fake = G(z)
        score, logits = D(torch.cat([real, fake]))  # one pass: LayerNorm keeps the samples independent
        real_score, fake_score = score[:B], score[B:]
        wasserstein = real_score.mean() - fake_score.mean()
        penalty = gradient_penalty(lambda x: D(x)[0], real, fake, self.rng)
        class_loss = F.cross_entropy(logits[:B], labels)
        if cfg.fake_class_loss:
            class_loss = class_loss + F.cross_entropy(logits[B:], fake_labels)
        critic_loss = -wasserstein + cfg.class_weight * class_loss + cfg.gp_weight * penalty
        optimizer_step(self.critic_optimizer, critic_loss, self.critic_params, 0.0)
        self.updates += 1
        metrics = {
            "losses/critic": critic_loss.item(), "losses/gradient_penalty": penalty.item(),
            "charts/wasserstein_estimate": wasserstein.item(),
            "charts/real_class_accuracy": (logits[:B].detach().argmax(1) == labels).float().mean().item(),
        }

        if self.updates % cfg.critic_steps == 0:
            # Generator: raise the critic's score of its images and make them classified as their labels.
            z, gen_labels = self._noise(B)
            gen_score, gen_logits = D(G(z))
            generator_loss = -gen_score.mean() + cfg.generator_class_weight * F.cross_entropy(gen_logits, gen_labels)
            # only_params: the critic's gradients are not needed here
            optimizer_step(self.generator_optimizer, generator_loss, self.generator_params, 0.0, only_params=True)
            metrics["losses/generator"] = generator_loss.item()
        return metrics

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] of the classes ``labels`` (B,), generated with batch norm in eval mode;
        noise from ``generator`` (torch's global one if None: never the learner's own, so drawing samples does
        not change the course of training)."""
        return generate(self.generator, labels.to(self.device), self.config.noise_dim, self.config.num_classes,
                        generator)

    @torch.no_grad()
    def log_probs(self, images: torch.Tensor, mc_samples: int = 0) -> torch.Tensor:
        """Class log-probabilities (B, K) of the auxiliary classifier for images in [-1, 1] (the interface of
        :func:`rlkit.jobs.classifier.evaluate_classifier`; the critic has no dropout, ``mc_samples`` is ignored)."""
        self.discriminator.eval()
        return F.log_softmax(self.discriminator(images)[1], dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "generator": self.generator.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "generator_optimizer": self.generator_optimizer.state_dict(),
                "updates": self.updates, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator.load_state_dict(state["generator"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.updates = state["updates"]
        self.rng.set_state(state["rng"].cpu())


@torch.no_grad()
def generate(generator_net: nn.Module, labels: torch.Tensor, noise_dim: int, num_classes: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """``generator_net`` applied to :func:`make_noise` of ``labels``, in eval mode (batch norm's running
    statistics, so an image does not depend on the rest of its batch); the net's mode is restored after."""
    was_training = generator_net.training
    generator_net.eval()
    try:
        return generator_net(make_noise(labels, noise_dim, num_classes, generator))
    finally:
        generator_net.train(was_training)


def save_samples(learner: ACGAN, path: str | Path, per_class: int = 10, seed: int = 352) -> Path:
    """Write a PNG grid of ``per_class`` rows, one column per class, from the same noise at every call (seeded
    by ``seed``) so grids of successive epochs show the same samples improving, as the course's template does."""
    from rlkit.analysis.images import save_grid

    k = learner.config.num_classes
    labels = torch.arange(k, device=learner.device).repeat(per_class)
    images = learner.sample(labels, torch.Generator(learner.device).manual_seed(seed))
    return save_grid(path, images, nrow=k, value_range=(-1.0, 1.0))


@torch.no_grad()
def class_conditional_accuracy(generator_net: nn.Module, classifier_fn: Callable[[torch.Tensor], torch.Tensor],
                               num_classes: int, per_class: int = 100, noise_dim: int = 128, seed: int = 0,
                               device: str | torch.device = "cpu", batch_size: int = 500
                               ) -> tuple[float, list[float]]:
    """How often an independently trained classifier recognizes the class a generator was asked for: a quality
    number for a conditional generator that needs no downloaded Inception weights.

    Generates ``per_class`` images of every class (noise seeded by ``seed``, batch norm in eval mode) and feeds
    them to ``classifier_fn``, which takes the generator's [-1, 1] images and returns logits (B, num_classes);
    wrap a classifier trained on normalized pixels accordingly, e.g.
    ``lambda x: model(Normalize(mean, std)((x + 1) / 2))``.

    Returns:
        (overall accuracy, accuracy per class in class order).
    """
    device = torch.device(device)
    rng = torch.Generator(device).manual_seed(seed)
    labels = torch.arange(num_classes, device=device).repeat_interleave(per_class)
    correct = torch.zeros(num_classes, device=device)
    for start in range(0, len(labels), batch_size):
        y = labels[start:start + batch_size]
        predicted = classifier_fn(generate(generator_net, y, noise_dim, num_classes, rng)).argmax(1)
        correct.index_add_(0, y, (predicted == y).to(correct.dtype))
    per = (correct / per_class).tolist()
    return sum(per) / num_classes, per
