"""Neural networks from scratch in NumPy: layers, a container, SGD, and a learner for the shared training loop.

Course assignments 1 and 2: a one-hidden-layer MNIST net (:func:`mlp`) and a CNN with one convolution layer of
several channels (:func:`cnn`, e.g. 32 filters 7x7). No torch and no SciPy here: every forward and backward pass is
written out, and the convolution is vectorized with im2col: a training step of the default CNN on 100 images takes
~15-20 ms on one core of the project VM, so a 60k-image MNIST epoch takes seconds, not minutes.

Every layer has ``forward(x) -> y`` (caching what its backward needs), ``backward(grad_y) -> grad_x`` (storing the
gradients of its parameters) and two dicts with the same keys, ``params`` and ``grads`` (empty for layers without
parameters). Parameters are float32 by default for speed; pass ``dtype=np.float64`` for gradient checks. The compute
dtype follows the input: parameters are cast to the input's float dtype on the fly.

Shapes: images (N, C, H, W), conv weights (K, C, kh, kw) as in torch, dense weights (in, out), logits (N, classes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike


def _as_float(x: Any, default: DTypeLike) -> np.ndarray:
    """``x`` as an array of its own float dtype, or of ``default`` if it is not floating (e.g. uint8 images)."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(default)


def _he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, dtype: DTypeLike) -> np.ndarray:
    """Kaiming-normal weights, std sqrt(2 / fan_in): keeps activation variance constant through ReLU layers."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


class Dense:
    """Fully connected layer, ``y = x @ weight + bias``: (N, in) -> (N, out)."""

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator,
                 dtype: DTypeLike = np.float32) -> None:
        self.params = {"weight": _he_normal(rng, (in_features, out_features), in_features, dtype),
                       "bias": np.zeros(out_features, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, in) -> (N, out)."""
        x = _as_float(x, self.params["weight"].dtype)
        self._x = x
        w, b = (self.params[k].astype(x.dtype, copy=False) for k in ("weight", "bias"))
        return x @ w + b

    def backward(self, grad_y: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Stores weight/bias grads; returns (N, in) input grad, or None when ``need_input_grad`` is False."""
        self.grads["weight"][...] = self._x.T @ grad_y
        self.grads["bias"][...] = grad_y.sum(axis=0)
        if not need_input_grad:
            return None
        return grad_y @ self.params["weight"].astype(grad_y.dtype, copy=False).T


class ReLU:
    """Elementwise ``max(x, 0)``; the gradient at exactly 0 is taken as 0."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Same shape in and out."""
        self._mask = x > 0
        return np.maximum(x, 0)

    def backward(self, grad_y: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Passes the gradient where the input was positive."""
        return grad_y * self._mask if need_input_grad else None


class Flatten:
    """(N, ...) -> (N, prod(...)), in C order, so (N, K, H, W) flattens channel-major as torch's ``flatten(1)``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._shape: tuple[int, ...] = ()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, ...) -> (N, features)."""
        self._shape = x.shape
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1, which fails for an empty batch

    def backward(self, grad_y: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """(N, features) -> the input's shape."""
        return grad_y.reshape(self._shape) if need_input_grad else None


class Conv2D:
    """2-D cross-correlation (torch's ``conv2d``): (N, C, H, W) -> (N, K, H', W'), H' = (H + 2p - kh) // s + 1.

    im2col: the input patches are copied into one (C*kh*kw, N*H'*W') matrix by a loop over the kh*kw kernel offsets
    (each copy is one strided slice of the whole batch), so the forward pass is a single matmul with the
    (K, C*kh*kw) weight matrix. Backward reuses that matrix for the weight grad and scatters the patch grads back
    with the same offset loop (col2im), which is much faster than ``np.add.at``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 rng: np.random.Generator, stride: int = 1, padding: int = 0, dtype: DTypeLike = np.float32) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.stride, self.padding = stride, padding
        fan_in = in_channels * kh * kw
        self.params = {"weight": _he_normal(rng, (out_channels, in_channels, kh, kw), fan_in, dtype),
                       "bias": np.zeros(out_channels, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cols: np.ndarray | None = None
        self._padded_shape: tuple[int, ...] = ()

    def _offsets(self, out_h: int, out_w: int) -> Iterator[tuple[int, int, slice, slice]]:
        """(i, j, rows, cols): the input pixels that kernel offset (i, j) touches for every output position."""
        s = self.stride
        _, _, kh, kw = self.params["weight"].shape
        for i in range(kh):
            for j in range(kw):
                yield i, j, slice(i, i + s * (out_h - 1) + 1, s), slice(j, j + s * (out_w - 1) + 1, s)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) -> (N, K, H', W')."""
        x = _as_float(x, self.params["weight"].dtype)
        k, c, kh, kw = self.params["weight"].shape
        p, s = self.padding, self.stride
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"Conv2D expects (N, {c}, H, W) input, got shape {x.shape}")
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        n, _, h, w = x.shape
        out_h, out_w = (h - kh) // s + 1, (w - kw) // s + 1
        if out_h < 1 or out_w < 1:
            raise ValueError(f"kernel {(kh, kw)} does not fit the padded input {(h, w)}")
        # Channel-first view so each offset's slice lands in cols[:, i, j] without a further transpose.
        x_cnhw = x.transpose(1, 0, 2, 3)
        cols = np.empty((c, kh, kw, n, out_h, out_w), x.dtype)
        for i, j, rows, cols_ in self._offsets(out_h, out_w):
            cols[:, i, j] = x_cnhw[:, :, rows, cols_]
        self._cols = cols.reshape(c * kh * kw, n * out_h * out_w)
        self._padded_shape = x.shape
        weight = self.params["weight"].astype(x.dtype, copy=False).reshape(k, -1)
        y = weight @ self._cols
        y += self.params["bias"].astype(x.dtype, copy=False)[:, None]
        # (K, N*H'*W') -> (N, K, H', W'): a view; Flatten's reshape makes the one copy.
        return y.reshape(k, n, out_h, out_w).transpose(1, 0, 2, 3)

    def backward(self, grad_y: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Stores weight/bias grads; returns the (N, C, H, W) input grad, or None when not needed (first layer)."""
        k, c, kh, kw = self.params["weight"].shape
        n, _, out_h, out_w = grad_y.shape
        grad_y = grad_y.transpose(1, 0, 2, 3).reshape(k, -1)  # (K, N*H'*W'), matching the cols' column order
        self.grads["weight"][...] = (grad_y @ self._cols.T).reshape(k, c, kh, kw)
        self.grads["bias"][...] = grad_y.sum(axis=1)
        if not need_input_grad:
            return None
        weight = self.params["weight"].astype(grad_y.dtype, copy=False).reshape(k, -1)
        grad_cols = (weight.T @ grad_y).reshape(c, kh, kw, n, out_h, out_w)
        # col2im: overlapping patches add up, one strided slice per kernel offset.
        grad_x = np.zeros((c, n) + self._padded_shape[2:], grad_y.dtype)
        for i, j, rows, cols_ in self._offsets(out_h, out_w):
            grad_x[:, :, rows, cols_] += grad_cols[:, i, j]
        p = self.padding
        if p:
            grad_x = grad_x[:, :, p:-p, p:-p]
        return grad_x.transpose(1, 0, 2, 3)


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels, computed with log-sum-exp."""

    def __init__(self) -> None:
        self._probs: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """logits (N, classes), labels int (N,) -> mean loss."""
        labels = np.asarray(labels)
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(f"expected logits (N, classes) and labels (N,), got {logits.shape} and {labels.shape}")
        # Subtracting the row max makes exp() overflow-free; log-softmax never takes log of a rounded-to-0 prob.
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        log_probs = shifted - np.log(sum_exp)
        self._probs, self._labels = exp / sum_exp, labels
        return float(-log_probs[np.arange(len(labels)), labels].mean())

    def backward(self) -> np.ndarray:
        """Gradient of the mean loss w.r.t. the logits: (softmax - one_hot) / N."""
        grad = self._probs.copy()
        n = len(self._labels)
        grad[np.arange(n), self._labels] -= 1.0
        return grad / n


Layer = Dense | ReLU | Flatten | Conv2D  # what Sequential holds: anything with forward/backward/params/grads


class Sequential:
    """Layers applied in order. Parameter keys are ``"{layer index}.{name}"``, e.g. ``"0.weight"``, as in torch."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Runs every layer's forward, each caching what its backward needs."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Backpropagates ``grad`` of the loss w.r.t. the output; fills every layer's ``grads``.

        Returns the grad w.r.t. the input, or None with ``need_input_grad=False``, which spares the first layer
        that work (a third of a conv layer's backward).
        """
        for index in reversed(range(len(self.layers))):
            grad = self.layers[index].backward(grad, need_input_grad=need_input_grad or index > 0)
        return grad

    def parameters(self) -> Iterator[tuple[int, str, np.ndarray, np.ndarray]]:
        """Yields (layer index, name, param, grad); param and grad are the live arrays, updated in place."""
        for index, layer in enumerate(self.layers):
            for name, param in layer.params.items():
                yield index, name, param, layer.grads[name]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter, keyed ``"{index}.{name}"``."""
        return {f"{index}.{name}": param.copy() for index, name, param, _ in self.parameters()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copies ``state`` into the parameters (in place, cast to their dtype); any array-like values work.

        Raises ValueError naming the missing/unexpected keys or the first shape mismatch, before changing anything.
        """
        own = {f"{index}.{name}": param for index, name, param, _ in self.parameters()}
        _check_arrays(own, state, "model")
        for key, param in own.items():
            param[...] = np.asarray(state[key])


def _check_arrays(own: Mapping[str, np.ndarray], state: Mapping[str, Any], what: str) -> None:
    """Raises ValueError unless ``state`` has exactly ``own``'s keys with the same shapes."""
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if missing or unexpected:
        raise ValueError(f"{what} state_dict keys do not match: missing {missing}, unexpected {unexpected}")
    for key, param in own.items():
        shape = np.shape(state[key])
        if shape != param.shape:
            raise ValueError(f"{what} state_dict[{key!r}] has shape {shape}, expected {param.shape}")


class SGD:
    """SGD with momentum and L2 weight decay, in torch's form (no dampening, no Nesterov).

    ``d = grad + weight_decay * param; buf = momentum * buf + d; param -= lr * buf``. ``lr`` may be set between
    steps (learning-rate schedules).
    """

    def __init__(self, model: Sequential, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.model, self.lr, self.momentum, self.weight_decay = model, lr, momentum, weight_decay
        # Zero buffers make the first step buf = d, as torch's; kept even with momentum 0 so the state is uniform.
        self.buffers = {f"{index}.{name}": np.zeros_like(param) for index, name, param, _ in model.parameters()}

    def step(self) -> None:
        """Updates every parameter in place from its current grad."""
        for index, name, param, grad in self.model.parameters():
            buf = self.buffers[f"{index}.{name}"]
            buf *= self.momentum
            buf += grad
            if self.weight_decay:
                buf += self.weight_decay * param
            param -= self.lr * buf

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and copies of the momentum buffers."""
        return {"lr": float(self.lr), "momentum": float(self.momentum), "weight_decay": float(self.weight_decay),
                "momentum_buffers": {key: buf.copy() for key, buf in self.buffers.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores hyperparameters (lr included, as torch does) and buffers; values may be any array-likes."""
        _check_arrays(self.buffers, state["momentum_buffers"], "optimizer")
        self.lr, self.momentum, self.weight_decay = (float(np.asarray(state[k]))
                                                     for k in ("lr", "momentum", "weight_decay"))
        for key, buf in self.buffers.items():
            buf[...] = np.asarray(state["momentum_buffers"][key])


def step_decay(base_lr: float, epoch: int, step_epochs: int = 5, gamma: float = 0.1) -> float:
    """Learning rate for 0-based ``epoch``: ``base_lr * gamma ** (epoch // step_epochs)`` (x0.1 every 5 epochs)."""
    return base_lr * gamma ** (epoch // step_epochs)


def mlp(in_features: int = 784, hidden: int = 100, num_classes: int = 10, seed: int = 0,
        dtype: DTypeLike = np.float32) -> Sequential:
    """Assignment 1: Flatten, Dense(in, hidden), ReLU, Dense(hidden, classes)."""
    rng = np.random.default_rng(seed)
    return Sequential([Flatten(), Dense(in_features, hidden, rng, dtype), ReLU(),
                       Dense(hidden, num_classes, rng, dtype)])


def cnn(in_channels: int = 1, image_size: int = 28, channels: int = 32, kernel_size: int = 7,
        num_classes: int = 10, seed: int = 0, dtype: DTypeLike = np.float32) -> Sequential:
    """Assignment 2: Conv2D(in, channels, k) (stride 1, no padding), ReLU, Flatten, Dense(channels*H'*W', classes)."""
    rng = np.random.default_rng(seed)
    out_size = image_size - kernel_size + 1
    return Sequential([Conv2D(in_channels, channels, kernel_size, rng, dtype=dtype), ReLU(), Flatten(),
                       Dense(channels * out_size * out_size, num_classes, rng, dtype)])


class NumpyClassifier:
    """Learner adapter for the shared training loop: one SGD step per ``update`` on an (images, labels) batch."""

    def __init__(self, model: Sequential, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.model = model
        self.optimizer = SGD(model, lr, momentum, weight_decay)
        self.loss_fn = SoftmaxCrossEntropy()
        self.dtype = next(model.parameters())[2].dtype

    def update(self, batch: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        """images float (N, C, H, W), labels int (N,) -> loss, batch accuracy and lr (before this step)."""
        images, labels = batch
        logits = self.model.forward(np.asarray(images, dtype=self.dtype))
        loss = self.loss_fn.forward(logits, labels)
        # The image gradient is never used, so the first layer skips computing it.
        self.model.backward(self.loss_fn.backward(), need_input_grad=False)
        self.optimizer.step()
        accuracy = float((logits.argmax(axis=1) == np.asarray(labels)).mean())
        return {"losses/loss": loss, "charts/accuracy": accuracy, "charts/learning_rate": float(self.optimizer.lr)}

    def logits(self, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
        """(N, C, H, W) -> (N, classes), in chunks of ``batch_size``.

        Chunks bound the im2col memory; small ones are also faster (1.6x at 100 than at 1000 for the default CNN
        on the project VM), as the (49, 100*22*22) patch matrix then stays in cache.
        """
        images = np.asarray(images)
        starts = range(0, len(images), batch_size) or [0]  # an empty input still gives (0, classes)
        return np.concatenate([self.model.forward(np.asarray(images[i:i + batch_size], dtype=self.dtype))
                               for i in starts])

    def set_lr(self, lr: float) -> None:
        """Sets the optimizer's learning rate (e.g. from :func:`step_decay` at each epoch)."""
        self.optimizer.lr = lr

    def state_dict(self) -> dict[str, Any]:
        """``{"model": ..., "optimizer": ...}``: plain floats and copies of numpy arrays."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`; arrays may arrive as any array-like (e.g. CPU torch tensors)."""
        # Check the optimizer's part too before loading the model, so a bad state changes nothing.
        _check_arrays(self.optimizer.buffers, state["optimizer"]["momentum_buffers"], "optimizer")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
