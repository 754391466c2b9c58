"""Start from published weights: load a weight file into a model, replace its head, freeze all but some layers.

The models of :mod:`rlkit.nets.resnet` and :mod:`rlkit.nets.cnn` keep their head in ``fc`` and report the width
before it as ``out_features``; the functions here rely on that. A model whose head has another name (torchvision's
DenseNet: ``classifier``) declares it as the class attribute ``head_name`` (see :func:`head_name`).

Typical fine-tuning::

    model = resnet18(num_classes=10)
    load_pretrained(model, "resnet18-f37072fd.pth", skip=("fc.",))   # keep the fresh 10-class head
    freeze(model, ("layer4", "fc"))
    ...
    model.train()
    frozen_batchnorm_eval(model)   # after every model.train(): frozen BN keeps its running statistics
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from rlkit.errors import UserError

SHOWN = 3
"""Offending keys named in a mismatch message (the rest are counted)."""


def _model_name(model: nn.Module) -> str:
    return getattr(model, "arch", None) or type(model).__name__


def _read_state_dict(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of a weight file: a plain state_dict, or one under "state_dict" or "model" (training
    checkpoints), with DistributedDataParallel's "module." prefix removed."""
    if not path.is_file():
        raise UserError(f"no weight file {path}: pass the path of a saved state_dict (e.g. a torchvision "
                        f"{_model_name(model)} .pth file)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails in many ways (KeyError, EOFError, ...) on a file it cannot read
        if isinstance(error, pickle.UnpicklingError) and zipfile.is_zipfile(path):  # torch.save's format
            raise UserError(f"{path} holds Python objects beyond tensors and plain data, which are not loaded "
                            f"(weights_only=True): save and pass model.state_dict(), not the whole model") from error
        raise UserError(f"{path} is not a torch.save file of tensors ({type(error).__name__}): pass a .pt/.pth "
                        f"file of a state_dict") from error
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path} is not a state_dict (a dict of tensors, or one under 'state_dict' or 'model'): "
                        f"save model.state_dict()")
    if data and all(k.startswith("module.") for k in data):  # saved from a DistributedDataParallel wrapper
        data = {k[len("module."):]: v for k, v in data.items()}
    return dict(data)


def head_name(model: nn.Module) -> str:
    """The attribute holding ``model``'s classification head: its ``head_name``, else ``fc``."""
    return getattr(model, "head_name", "fc")


def _under(name: str, prefix: str) -> bool:
    """Whether ``name`` is ``prefix`` or inside it, by whole dotted components ("layer1" is not "layer10")."""
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def _top_level(model: nn.Module) -> str:
    return ", ".join(name for name, _ in model.named_children())


def _shape(tensor: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, tensor.shape)) + "]"


def load_pretrained(model: nn.Module, path: str | Path, skip: Sequence[str] = ()) -> list[str]:
    """Load the weight file ``path`` into ``model``, every key checked: nothing missing, nothing extra, every shape
    equal (``strict=True`` and more: the message says what to do).

    Args:
        model: the network to fill, e.g. :func:`rlkit.nets.resnet.resnet18`.
        path: a ``torch.save`` file of a state_dict (read with ``weights_only=True``: tensors and plain data only).
        skip: key prefixes not loaded from the file, e.g. ``("fc.",)`` to keep a fresh head of another size.

    Returns:
        The model's keys left as initialized (those under ``skip``).

    Raises:
        UserError: a missing or unreadable file, or keys and shapes that do not match (one line naming the file,
            the model, the first offending keys with both shapes, and the fix).

    A file without ``num_batches_tracked`` counters (torchvision's weights from before PyTorch 0.4.1) is accepted:
    those counters only matter for BatchNorm with ``momentum=None`` and keep the model's value. A model with a
    ``rename_legacy_keys(state) -> state`` method has the file's keys renamed by it first (torchvision's DenseNet
    files use module names from before PyTorch 0.4). A model with ``adapt_pretrained(state) -> state`` converts
    the file's tensors next (:class:`rlkit.nets.video.FlowResNet` makes an RGB ``conv1`` take optical flow).
    """
    path = Path(path)
    state = _read_state_dict(path, model)
    if hasattr(model, "rename_legacy_keys"):
        state = model.rename_legacy_keys(state)
    if hasattr(model, "adapt_pretrained"):
        state = model.adapt_pretrained(state)
    own = model.state_dict()
    for prefix in skip:
        if not any(_under(k, prefix) for k in (*own, *state)):
            raise UserError(f"skip prefix {prefix!r} matches no key of {_model_name(model)} or {path}: "
                            f"its top-level modules are {_top_level(model)}")
    skipped = [k for k in own if any(_under(k, p) for p in skip)]
    state = {k: v for k, v in state.items() if not any(_under(k, p) for p in skip)}
    wanted = {k: v for k, v in own.items() if k not in skipped}

    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in wanted]
    shapes = [k for k in wanted if k in state and state[k].shape != wanted[k].shape]
    if missing or unexpected or shapes:
        problems = ([f"shape {k} file {_shape(state[k])} model {_shape(wanted[k])}" for k in shapes]
                    + [f"missing {k} {_shape(wanted[k])}" for k in missing]
                    + [f"unexpected {k} {_shape(state[k])}" for k in unexpected])
        more = f" (+{len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        head = head_name(model)
        head_only = all(_under(k, head) for k in (*missing, *unexpected, *shapes))
        fix = (f"skip the head: load_pretrained(..., skip=('{head}.',)) keeps a fresh one" if head_only
               else f"pass a weight file saved from a {_model_name(model)} (e.g. torchvision's), or skip the keys "
                    f"that differ")
        raise UserError(f"{path} does not fit {_model_name(model)} ({len(state)} tensors in the file, "
                        f"{len(wanted)} expected): {'; '.join(problems[:SHOWN])}{more}: {fix}")

    merged = {**own, **state}  # skipped keys and absent counters keep the model's values
    model.load_state_dict(merged, strict=True)
    return skipped


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a fresh head: ``fc`` (or its :func:`head_name`) ``= Linear(out_features, num_classes)`` on
    the model's device and dtype (``num_classes=0``: ``nn.Identity``, the model becomes an encoder). Returns the
    new head."""
    head_attr = head_name(model)
    if not hasattr(model, "out_features") or not hasattr(model, head_attr):
        raise TypeError(f"{type(model).__name__} has no {head_attr!r} head and 'out_features' width to replace")
    reference = next(model.parameters())
    head = (nn.Linear(model.out_features, num_classes, device=reference.device, dtype=reference.dtype)
            if num_classes else nn.Identity())
    setattr(model, head_attr, head)
    return head


def freeze(model: nn.Module, trainable: Sequence[str]) -> list[str]:
    """Train only the parameters under the ``trainable`` name prefixes, e.g. ``("layer4", "fc")``; every other
    parameter gets ``requires_grad=False`` (and the listed ones ``True``, so calling it again re-plans).

    Prefixes match whole dotted components ("layer1" is not "layer10"; "fc." and "fc" are the same).
    Returns the names of the trainable parameters; a prefix matching none is a UserError naming the top-level
    modules. Build the optimizer from ``[p for p in model.parameters() if p.requires_grad]`` afterwards, and call
    :func:`frozen_batchnorm_eval` after every ``model.train()``.
    """
    names = [name for name, _ in model.named_parameters()]
    for prefix in trainable:
        if not any(_under(name, prefix) for name in names):
            raise UserError(f"no parameters under {prefix!r} in {_model_name(model)}: "
                            f"its top-level modules are {_top_level(model)}")
    kept = []
    for name, param in model.named_parameters():
        param.requires_grad_(any(_under(name, prefix) for prefix in trainable))
        if param.requires_grad:
            kept.append(name)
    return kept


def frozen_batchnorm_eval(model: nn.Module) -> list[str]:
    """Put every batch-norm layer whose parameters are all frozen into eval mode; returns their names.

    ``model.train()`` switches every layer to batch statistics and running-statistic updates, which would let
    the pretrained statistics of frozen layers drift (and shift the features the trainable layers see). Call
    this right after each ``model.train()``; ``model.eval()`` needs nothing. A batch-norm layer without
    parameters (``affine=False``) is left as it is: it cannot tell frozen from trained.
    """
    names = []
    for name, module in model.named_modules():
        if frozen_batchnorm(module):
            module.eval()
            names.append(name)
    return names


def frozen_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` is a batch-norm layer whose parameters are all frozen (``affine=False``: never)."""
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return False
    params = list(module.parameters(recurse=False))
    return bool(params) and not any(p.requires_grad for p in params)
