"""Image classification as a learner of the shared loop: cross-entropy, a choice of optimizer and schedule, and
test-time evaluation (top-1/top-5, Monte Carlo dropout)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlkit.optim import clip_and_step, optimizer_step, set_learning_rate
from rlkit.distributed import ddp_comm_hook, world
from rlkit.errors import UserError
from rlkit.nets.pretrained import frozen_batchnorm_eval

OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "step", "multistep", "cosine")
AUGMENTATIONS = ("crop", "resized-crop-jitter")


@dataclass
class ClassifierConfig:
    """Supervised classification hyperparameters. Defaults are the course's CIFAR recipe (Adam 1e-3,
    crop + flip augmentation); each task and net preset changes what its assignment asks for."""

    epochs: int = 30
    """Passes over the training set."""
    batch_size: int = 128
    """Images per update."""
    optimizer: str = "adam"
    """adam, rmsprop or sgd (with momentum)."""
    learning_rate: float = 1e-3
    """Initial learning rate."""
    momentum: float = 0.9
    """SGD momentum (and RMSprop's momentum term)."""
    weight_decay: float = 0.0
    """L2 penalty coefficient added to the gradient (Adam: the classic coupled form, not AdamW)."""
    schedule: str = "constant"
    """Learning-rate schedule over epochs: constant, step (x gamma every step_epochs), multistep (x gamma at each of
    the milestones) or cosine (to 0 at the end)."""
    step_epochs: int = 5
    """Epochs between decays of the step schedule."""
    milestones: tuple[int, ...] = (50, 75)
    """Epochs at which the multistep schedule multiplies the learning rate by gamma."""
    gamma: float = 0.1
    """Decay factor of the step and multistep schedules."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing."""
    max_grad_norm: float = 0.0
    """Clip the global gradient norm to this (0 disables)."""
    augment: bool = True
    """Augment training batches as augmentation says."""
    augmentation: str = "crop"
    """crop: a random crop with zero padding (crop_padding); resized-crop-jitter: a random crop of 70-100% of the
    area resized back, and brightness, contrast, saturation and hue jitter of 0.1 (the course's GAN template).
    Either with a horizontal flip where the task allows."""
    crop_padding: int = 4
    """Zero padding of the random crop, in pixels."""
    dropout: float = 0.2
    """Dropout probability of the torch nets (the stem of the ResNet, the blocks of the deep CNN)."""
    width: float = 1.0
    """Multiplies the channel counts of the cnn and resnet nets (1: the published widths)."""
    hidden: int = 100
    """numpy-mlp: hidden ReLU units; lstm, gru: recurrent units."""
    conv_channels: int = 32
    """numpy-cnn: filters of its convolution."""
    kernel_size: int = 7
    """numpy-cnn: side of its square filters."""
    depth: int = 100
    """densenet: weighted layers of the DenseNet-BC, 6n + 4 (100: DenseNet-BC-100-12 with --growth 12)."""
    growth: int = 12
    """densenet: channels each dense layer adds (the growth rate k)."""
    input_size: int = 0
    """Resize images to this side before the net (e.g. 224 to fine-tune an ImageNet ResNet; 0 keeps them)."""
    pretrained: str = ""
    """A weight file to start from (torchvision-compatible ResNet or DenseNet keys); its classification head is
    replaced."""
    compile: bool = False
    """Train through torch.compile (a static graph built by TorchDynamo and compiled by Inductor; on a CPU it
    needs a C++ compiler) instead of eager PyTorch; evaluation and checkpoints use the eager module."""
    freeze_except: tuple[str, ...] = ()
    """Freeze every parameter except those under these name prefixes, e.g. layer4 fc (empty: train all)."""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown --optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown --schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.augmentation not in AUGMENTATIONS:
            raise UserError(f"unknown --augmentation {self.augmentation!r}: use one of {', '.join(AUGMENTATIONS)}")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise UserError(f"--milestones must be increasing positive epochs, got {list(self.milestones)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise UserError(f"--epochs and --batch-size must be positive (got {self.epochs}, {self.batch_size})")


def learning_rate_at(config: ClassifierConfig, epoch: float) -> float:
    """The scheduled learning rate ``epoch`` epochs (fractional) into training."""
    if config.schedule == "step":
        return config.learning_rate * config.gamma ** int(epoch // config.step_epochs)
    if config.schedule == "multistep":
        return config.learning_rate * config.gamma ** sum(epoch >= m for m in config.milestones)
    if config.schedule == "cosine":
        return 0.5 * config.learning_rate * (1 + math.cos(math.pi * min(epoch / config.epochs, 1.0)))
    return config.learning_rate


def make_optimizer(config: ClassifierConfig, params: list[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    fused = True if device.type in ("cpu", "cuda") else None
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                   momentum=config.momentum)
    return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                           weight_decay=config.weight_decay, fused=fused)


class Classifier:
    """A torch classification net and its optimizer; ``update`` is one cross-entropy step on a batch.

    Args:
        model: maps float images (B, C, H, W) to logits (B, classes).
        config: the hyperparameters.
        steps_per_epoch: updates per pass over the data (the schedule is in epochs).
        device: where ``model`` lives.
    """

    def __init__(self, model: nn.Module, config: ClassifierConfig, steps_per_epoch: int, device: torch.device):
        self.model, self.config, self.device = model, config, device
        self.steps_per_epoch = steps_per_epoch
        # Under torchrun, training goes through DDP (gradients averaged over processes in backward); evaluation
        # and checkpoints use the plain module, so a checkpoint loads the same with or without torchrun.
        self.train_model = model
        if world()[1] > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index or 0] if device.type == "cuda" else None)
            hook = ddp_comm_hook()  # --allreduce ring: DDP's buckets go through the ring instead of its own
            if hook is not None:
                self.train_model.register_comm_hook(None, hook)
        if config.compile:  # the same parameters: state_dict() of self.model keeps its keys
            self.train_model = torch.compile(self.train_model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(config, self.params, device)
        self.updates = 0

    def update(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        lr = self._scheduled_learning_rate()
        loss, accuracy = self._loss(batch)
        grad_norm = optimizer_step(self.optimizer, loss, self.params, self.config.max_grad_norm,
                                   averaged=self.train_model is not self.model)  # DDP averaged them
        self.updates += 1
        return {"losses/loss": loss.item(), "charts/accuracy": accuracy, "charts/learning_rate": lr,
                "losses/grad_norm": grad_norm}

    def _scheduled_learning_rate(self) -> float:
        lr = learning_rate_at(self.config, self.updates / self.steps_per_epoch)
        set_learning_rate(self.optimizer, lr)
        return lr

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, float]:
        """(cross-entropy, accuracy) of the batch, through the training model in training mode."""
        images, labels = batch
        self.model.train()
        frozen_batchnorm_eval(self.model)
        logits = self.train_model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing)
        return loss, (logits.detach().argmax(1) == labels).float().mean().item()

    # ------------------------------------------------------------------ parameter server (--distributed ps-*)
    def gradients(self, batch: tuple[torch.Tensor, torch.Tensor]
                  ) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[str, float]]:
        """A worker's part: (the gradient of each trainable parameter, the buffers after the forward pass, loss and
        accuracy) on ``batch``, without a step."""
        loss, accuracy = self._loss(batch)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        return grads, [b.detach() for b in self.model.buffers()], {"losses/loss": loss.item(),
                                                                   "charts/accuracy": accuracy}

    def apply_gradients(self, grads: list[torch.Tensor]) -> dict[str, float]:
        """The server's part: one scheduled optimizer step with ``grads`` (one per trainable parameter)."""
        lr = self._scheduled_learning_rate()
        for param, grad in zip(self.params, grads, strict=True):
            # laid out as its parameter: the fused optimizers read .grad's memory in the parameter's order, and a
            # gradient from autograd.grad (a convolution's, in channels-last) may be strided otherwise
            param.grad = torch.empty_like(param).copy_(grad)
        grad_norm = clip_and_step(self.optimizer, self.params, self.config.max_grad_norm)
        self.updates += 1
        return {"charts/learning_rate": lr, "losses/grad_norm": grad_norm}

    def state_tensors(self) -> list[torch.Tensor]:
        """Every parameter and buffer of the model, in ``state_dict`` order: what workers pull."""
        return list(self.model.state_dict().values())

    @torch.no_grad()
    def load_state_tensors(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite the model's parameters and buffers with ``tensors`` (from :meth:`state_tensors`)."""
        for mine, given in zip(self.model.state_dict().values(), tensors, strict=True):
            mine.copy_(given)

    @torch.no_grad()
    def load_buffers(self, buffers: list[torch.Tensor]) -> None:
        """Overwrite the model's buffers (batch-norm statistics) with ``buffers``, in ``model.buffers()`` order."""
        for mine, given in zip(self.model.buffers(), buffers, strict=True):
            mine.copy_(given)

    @torch.no_grad()
    def log_probs(self, images: torch.Tensor, mc_samples: int = 0) -> torch.Tensor:
        """Class log-probabilities (B, classes). ``mc_samples`` > 0: Monte Carlo dropout, the log of the mean of
        that many softmax outputs with dropout left on (batch norm stays in eval mode); 0: the standard scaling
        rule (dropout off, its weights implicitly scaled by the keep probability)."""
        self.model.eval()
        if mc_samples <= 0:
            return F.log_softmax(self.model(images), dim=1)
        for module in self.model.modules():
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.train()
        probs = sum(F.softmax(self.model(images), dim=1) for _ in range(mc_samples)) / mc_samples
        self.model.eval()
        return probs.clamp_min(1e-30).log()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]
