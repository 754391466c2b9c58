"""Image classification as a learner of the shared loop: cross-entropy, a choice of optimizer and schedule, and
test-time evaluation (top-1/top-5, Monte Carlo dropout)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rlkit.config import COUNT, NON_NEGATIVE, POSITIVE, UNIT, require_all
from rlkit.optim import clip_and_step, optimizer_step, set_learning_rate
from rlkit.distributed import ddp_comm_hook, world
from rlkit.errors import UserError
from rlkit.nets.pretrained import frozen_batchnorm, frozen_batchnorm_eval
from rlkit.supervised.hessian_free import HessianFree, SoftmaxCrossEntropy, fixed_randomness, module_outputs

OPTIMIZERS = ("adam", "rmsprop", "sgd", "lbfgs", "hessian-free")
SECOND_ORDER = ("lbfgs", "hessian-free")
"""Optimizers that evaluate the loss of a batch more than once per update (a closure)."""
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
    """adam, rmsprop, sgd (with momentum), lbfgs (torch.optim.LBFGS with a strong-Wolfe line search, lbfgs_iterations
    per batch) or hessian-free (Martens 2010: conjugate gradient on Gauss-Newton products, hf_* fields)."""
    learning_rate: float = 1e-3
    """Initial learning rate (lbfgs: the first trial step of each line search, 1 unless given; hessian-free takes
    none: its steps come from CG, damping and its line search)."""
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
    bn_recalibration: int = 50
    """Batches of training images (without augmentation) passed through the net with dropout off, to estimate batch
    norm's statistics as the net runs at test time, before every evaluation with the scaling rule. Dropout before
    batch norm shifts the variance the statistics see from training to test (Li et al. 2019, "variance shift"); in
    the course's ResNet, whose stem has dropout and whose head a global max pool, this can leave a net that fits
    its training batches at near-chance test accuracy. 0: the running averages training kept. Only nets with both
    dropout and batch norm; Monte Carlo dropout keeps training's statistics. Video runs (cnn-lstm) pass batches of
    clips from training videos, sampled as at test time."""
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
    hf_damping: float = 1.0
    """hessian-free: initial Levenberg-Marquardt damping lambda (Martens 2010: 1), then x3/2 after a step the
    quadratic model predicted badly (reduction ratio < 1/4) and x2/3 after one it predicted well (> 3/4)."""
    hf_cg_iterations: int = 50
    """hessian-free: conjugate-gradient iterations per update at most (Martens 2010: 250; 50 keeps a CPU update
    short); CG also stops early on Martens' relative-progress rule."""
    hf_cg_decay: float = 0.95
    """hessian-free: CG starts from the previous update's last CG solution times this (Martens 2010: 0.95; 0: from
    zero)."""
    hf_curvature_batch: int = 0
    """hessian-free: images of each batch the Gauss-Newton products use (Martens uses a curvature minibatch smaller
    than the gradient's; 0: the whole batch)."""
    hf_line_search: bool = True
    """hessian-free: shrink the chosen step by 0.8 until the loss decreases enough (Armijo, as Martens and Sutskever
    2012); --no-hf-line-search takes the CG iterate backtracking chose as it is (Martens 2010)."""
    lbfgs_iterations: int = 20
    """lbfgs: iterations on each batch (torch.optim.LBFGS's max_iter)."""
    lbfgs_history: int = 100
    """lbfgs: the most recent steps kept for the inverse-Hessian estimate (history_size)."""

    READ_ONLY_WITH: ClassVar[dict[str, tuple[str, tuple[Any, ...]]]] = {
        "momentum": ("optimizer", ("sgd", "rmsprop")),
        "step_epochs": ("schedule", ("step",)),
        "milestones": ("schedule", ("multistep",)),
        "gamma": ("schedule", ("step", "multistep")),
        **{name: ("optimizer", ("hessian-free",)) for name in ("hf_damping", "hf_cg_iterations", "hf_cg_decay",
                                                                "hf_curvature_batch", "hf_line_search")},
        **{name: ("optimizer", ("lbfgs",)) for name in ("lbfgs_iterations", "lbfgs_history")},
    }
    """Fields that only some optimizers or schedules read: field -> (the field that chooses, the choices that read
    it); a flag for one that the run's choice ignores is refused (:func:`rlkit.config.refuse_unread_flags`)."""

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
        require_all([("--hf-damping", self.hf_damping, POSITIVE), ("--hf-cg-iterations", self.hf_cg_iterations, COUNT),
                     ("--hf-cg-decay", self.hf_cg_decay, UNIT),
                     ("--hf-curvature-batch", self.hf_curvature_batch, NON_NEGATIVE),
                     ("--lbfgs-iterations", self.lbfgs_iterations, COUNT),
                     ("--bn-recalibration", self.bn_recalibration, NON_NEGATIVE),
                     ("--lbfgs-history", self.lbfgs_history, COUNT)])
        if self.optimizer in SECOND_ORDER and self.max_grad_norm > 0:
            raise UserError(f"--optimizer {self.optimizer} steps along its own search direction, which clipping the "
                            "gradient would make inconsistent with the loss: add --max-grad-norm 0")
        if self.optimizer == "hessian-free" and self.schedule != "constant":
            raise UserError("--optimizer hessian-free has no learning rate to schedule (its damping adapts itself): "
                            "drop --schedule or use --schedule constant")
        if self.optimizer == "hessian-free" and self.compile:
            raise UserError("--optimizer hessian-free runs its forward- and reverse-mode passes eagerly, which "
                            "torch.compile does not trace: drop --compile")


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
    if config.optimizer == "hessian-free":
        return HessianFree(params, damping=config.hf_damping, max_cg_iterations=config.hf_cg_iterations,
                           cg_decay=config.hf_cg_decay, line_search=config.hf_line_search,
                           weight_decay=config.weight_decay)
    if config.optimizer == "lbfgs":  # its weight decay is a term of the closure's loss (Classifier.objective)
        return torch.optim.LBFGS(params, lr=config.learning_rate, max_iter=config.lbfgs_iterations,
                                 history_size=config.lbfgs_history, line_search_fn="strong_wolfe")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                   momentum=config.momentum)
    return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                           weight_decay=config.weight_decay, fused=fused)


def shifted_by_dropout(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers whose statistics training estimates with dropout on, in a net that has dropout: those
    that :func:`recalibrated_batch_norm` re-estimates (none in a net without dropout, or with p = 0)."""
    if not any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return []
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and not frozen_batchnorm(m)]


@contextmanager
def recalibrated_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor]) -> Iterator[None]:
    """Within the block, ``model``'s batch-norm statistics are the mean and variance of ``batches`` (float inputs)
    as the net computes them in eval mode, dropout off: each layer's running mean and variance become the average
    of its per-batch statistics (torch's cumulative average, ``momentum=None``, as
    ``torch.optim.swa_utils.update_bn``). Training's statistics are put back after it, so training, checkpoints
    and Monte Carlo dropout are unchanged. Frozen batch-norm layers keep theirs."""
    layers = shifted_by_dropout(model)
    if not layers:
        yield
        return
    kept = [(m, m.momentum, {k: v.clone() for k, v in m.state_dict().items()}) for m in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for layer in layers:
                layer.reset_running_stats()
                layer.momentum = None
                layer.train()
            for images in batches:
                model(images)
        for layer in layers:
            layer.eval()
        yield
    finally:
        for layer, momentum, state in kept:
            layer.momentum = momentum
            layer.load_state_dict(state)
        model.train(was_training)


class Classifier:
    """A torch classification net and its optimizer; ``update`` is one cross-entropy step on a batch.

    Args:
        model: maps float images (B, C, H, W) to logits (B, classes).
        config: the hyperparameters.
        steps_per_epoch: updates per pass over the data (the schedule is in epochs).
        device: where ``model`` lives.
    """

    def __init__(self, model: nn.Module, config: ClassifierConfig, steps_per_epoch: int, device: torch.device):
        if config.optimizer in SECOND_ORDER and world()[1] > 1:
            raise UserError(f"--optimizer {config.optimizer} runs in one process (its line searches and CG would "
                            "need every process's loss at every trial point): start it without torchrun")
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
        self.output_loss = SoftmaxCrossEntropy(config.label_smoothing)
        self.updates = 0

    def update(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        images, labels = batch
        lr = self._scheduled_learning_rate()
        self.model.train()
        frozen_batchnorm_eval(self.model)
        step = {"lbfgs": self.lbfgs_step, "hessian-free": self.hessian_free_step}.get(self.config.optimizer,
                                                                                       self.first_order_step)
        logits, metrics = step(images, labels)
        self.updates += 1
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        if self.config.optimizer != "hessian-free":
            metrics["charts/learning_rate"] = lr
        return {**metrics, "charts/accuracy": accuracy.item()}

    def first_order_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.train_model(images)
        loss = self.output_loss(logits, labels)
        grad_norm = optimizer_step(self.optimizer, loss, self.params, self.config.max_grad_norm,
                                   averaged=self.train_model is not self.model)  # DDP averaged them
        return logits, {"losses/loss": loss.item(), "losses/grad_norm": grad_norm}

    def objective(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss plus ½ weight_decay ||θ||²: what L-BFGS minimizes (the same gradient as coupled weight decay)."""
        loss = self.output_loss(logits, labels)
        if self.config.weight_decay:
            loss = loss + 0.5 * self.config.weight_decay * sum(p.pow(2).sum() for p in self.params)
        return loss

    def lbfgs_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        first: list[tuple[torch.Tensor, float]] = []
        seed = int(torch.randint(2**31, ()))

        def closure() -> torch.Tensor:  # the same batch and dropout masks at every point the line search tries
            self.optimizer.zero_grad(set_to_none=True)
            with fixed_randomness(seed, self.device):  # (batch-norm running statistics move at every call)
                logits = self.train_model(images)
            loss = self.objective(logits, labels)
            loss.backward()
            for p in self.params:  # LBFGS flattens gradients with view(), which channels-last conv weights refuse
                if p.grad is not None:
                    p.grad = p.grad.contiguous()
            if not first:
                first.append((logits, float(nn.utils.get_total_norm([p.grad for p in self.params]))))
            return loss

        loss = self.optimizer.step(closure)
        (logits, grad_norm), = first
        return logits, {"losses/loss": float(loss.detach()), "losses/grad_norm": grad_norm}

    def hessian_free_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        seed = int(torch.randint(2**31, ()))  # one set of dropout masks for every pass over this batch
        with fixed_randomness(seed, self.device):
            logits = self.model(images)  # the plain pass: the gradient, and batch-norm statistics moved once
        loss = self.output_loss(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None]))
        batch_outputs = module_outputs(self.model, images, seed)
        curvature_images = images[:self.config.hf_curvature_batch or len(images)]
        try:
            info = self.optimizer.step(lambda: self.output_loss(batch_outputs(tuple(self.params)), labels),
                                       module_outputs(self.model, curvature_images, seed), self.output_loss)
        except NotImplementedError as error:  # a layer whose forward-mode derivative PyTorch lacks (CPU LSTMs)
            raise UserError(f"--optimizer hessian-free needs forward-mode derivatives of every layer, and this net "
                            f"has one without ({str(error).splitlines()[0][:120]}): pick another --optimizer") from None
        return logits, {"losses/loss": loss.item(), "losses/grad_norm": grad_norm,
                        "charts/damping": info["damping"],
                        "charts/reduction_ratio": info["reduction_ratio"],
                        "charts/cg_iterations": info["cg_iterations"],
                        "charts/step_size": info["step_size"]}

    def _scheduled_learning_rate(self) -> float:
        lr = learning_rate_at(self.config, self.updates / self.steps_per_epoch)
        set_learning_rate(self.optimizer, lr)
        return lr

    # ------------------------------------------------------------------ parameter server (--distributed ps-*)
    def gradients(self, batch: tuple[torch.Tensor, torch.Tensor]
                  ) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[str, float]]:
        """A worker's part: (the gradient of each trainable parameter, the buffers after the forward pass, loss and
        accuracy) on ``batch``, without a step."""
        images, labels = batch
        self.model.train()
        frozen_batchnorm_eval(self.model)
        logits = self.train_model(images)
        loss = self.output_loss(logits, labels)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        accuracy = (logits.detach().argmax(1) == labels).float().mean().item()
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
