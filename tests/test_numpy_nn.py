"""Unit and learning tests for the NumPy-from-scratch networks: finite-difference gradient checks in float64,
agreement with torch's conv2d, hand-computed loss and SGD values, checkpoint round trips, and a tiny learning task."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from rlkit.supervised import numpy_nn
from rlkit.supervised.numpy_nn import (SGD, Conv2D, Dense, Flatten, NumpyClassifier, ReLU, Sequential,
                                       SoftmaxCrossEntropy, cnn, mlp, step_decay)

F64 = np.float64


def numerical_grad(f: Callable[[], float], a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of scalar ``f()`` w.r.t. every entry of ``a`` (perturbed in place, then restored)."""
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        plus = f()
        a[idx] = old - eps
        minus = f()
        a[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||a - n|| / (||a|| + ||n||): scale-free, and 0 only when they agree."""
    assert analytic.shape == numeric.shape
    return float(np.linalg.norm(analytic - numeric) / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), 1e-30))


def check_layer_gradients(layer, x: np.ndarray, rng: np.random.Generator) -> None:
    """Checks input and parameter grads of ``layer`` for the scalar loss sum(forward(x) * R), R fixed and random."""
    weights = rng.standard_normal(layer.forward(x).shape)

    def loss() -> float:
        return float(np.sum(layer.forward(x) * weights))

    loss()
    grad_x = layer.backward(weights)
    analytic = {name: grad.copy() for name, grad in layer.grads.items()}  # the numeric passes overwrite caches
    assert rel_error(grad_x, numerical_grad(loss, x)) < 1e-6
    assert analytic.keys() == layer.params.keys()
    for name, param in layer.params.items():
        assert np.any(analytic[name] != 0), name
        assert rel_error(analytic[name], numerical_grad(loss, param)) < 1e-6, name


def randomize_biases(layers, rng: np.random.Generator) -> None:
    """Biases start at zero; random ones make the bias paths (and ReLU kinks) part of what is checked."""
    for layer in layers:
        if "bias" in layer.params:
            layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ---------------------------------------------------------------- finite-difference gradient checks (float64)

def test_dense_gradients(rng):
    layer = Dense(5, 4, rng, dtype=F64)
    randomize_biases([layer], rng)
    check_layer_gradients(layer, rng.standard_normal((3, 5)), rng)


def test_relu_forward_and_gradients(rng):
    # Keep inputs away from the kink at 0, where the function is not differentiable.
    x = rng.uniform(0.01, 1.0, (4, 6)) * rng.choice([-1.0, 1.0], (4, 6))
    layer = ReLU()
    np.testing.assert_array_equal(layer.forward(x), np.where(x > 0, x, 0.0))
    check_layer_gradients(layer, x, rng)
    layer.forward(np.array([-0.5, -1e-3, 0.0, 1e-3, 2.0]))
    np.testing.assert_array_equal(layer.backward(np.full(5, 3.0)), [0.0, 0.0, 0.0, 3.0, 3.0])


@pytest.mark.parametrize("in_channels, out_channels, kernel, stride, padding", [
    (3, 4, 3, 1, 0),
    (2, 3, 3, 2, 1),
    (2, 3, (3, 2), 2, 1),
])
def test_conv_gradients(rng, in_channels, out_channels, kernel, stride, padding):
    layer = Conv2D(in_channels, out_channels, kernel, rng, stride=stride, padding=padding, dtype=F64)
    randomize_biases([layer], rng)
    check_layer_gradients(layer, rng.standard_normal((2, in_channels, 7, 6)), rng)


def test_softmax_cross_entropy_gradients(rng):
    logits, labels = rng.standard_normal((5, 4)) * 3, np.array([0, 3, 1, 1, 2])
    loss_fn = SoftmaxCrossEntropy()
    loss_fn.forward(logits, labels)
    analytic = loss_fn.backward()
    numeric = numerical_grad(lambda: loss_fn.forward(logits, labels), logits)
    assert rel_error(analytic, numeric) < 1e-6


def test_sequential_cnn_gradients(rng):
    model = Sequential([Conv2D(2, 3, 3, rng, stride=2, padding=1, dtype=F64), ReLU(), Flatten(),
                        Dense(3 * 4 * 4, 5, rng, dtype=F64)])
    randomize_biases(model.layers, rng)
    x, labels = rng.standard_normal((3, 2, 8, 8)), np.array([4, 0, 2])
    loss_fn = SoftmaxCrossEntropy()

    def loss() -> float:
        return loss_fn.forward(model.forward(x), labels)

    loss()
    grad_x = model.backward(loss_fn.backward())
    analytic = {(index, name): grad.copy() for index, name, _, grad in model.parameters()}
    assert len(analytic) == 4
    assert rel_error(grad_x, numerical_grad(loss, x)) < 1e-6
    for index, name, param, _ in model.parameters():
        assert rel_error(analytic[index, name], numerical_grad(loss, param)) < 1e-6, (index, name)


def test_backward_can_skip_the_input_grad(rng):
    model = Sequential([Conv2D(1, 2, 3, rng, dtype=F64), ReLU(), Flatten(), Dense(2 * 4 * 4, 3, rng, dtype=F64)])
    x = rng.standard_normal((2, 1, 6, 6))
    grad = rng.standard_normal(model.forward(x).shape)
    model.backward(grad)
    full = [g.copy() for *_, g in model.parameters()]
    model.forward(x)
    assert model.backward(grad, need_input_grad=False) is None
    for expected, (*_, got) in zip(full, model.parameters()):
        np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------- agreement with torch

@pytest.mark.parametrize("kernel, stride, padding, size", [
    (7, 1, 0, 28),
    (3, 2, 1, 9),
    (3, 1, 2, 8),
    ((3, 2), 2, 0, 10),
    (5, 3, 2, 11),
])
def test_conv_matches_torch(rng, kernel, stride, padding, size):
    layer = Conv2D(3, 5, kernel, rng, stride=stride, padding=padding, dtype=F64)
    randomize_biases([layer], rng)
    x = rng.standard_normal((4, 3, size, size))
    y = layer.forward(x)
    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(layer.params["weight"], requires_grad=True)
    b_t = torch.tensor(layer.params["bias"], requires_grad=True)
    y_t = torch.nn.functional.conv2d(x_t, w_t, b_t, stride=stride, padding=padding)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-10, atol=1e-10)

    grad_y = rng.standard_normal(y.shape)
    y_t.backward(torch.tensor(grad_y))
    np.testing.assert_allclose(layer.backward(grad_y), x_t.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["weight"], w_t.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["bias"], b_t.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_dense_matches_torch_linear(rng):
    layer = Dense(6, 4, rng, dtype=F64)
    randomize_biases([layer], rng)
    x = rng.standard_normal((5, 6))
    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(layer.params["weight"], requires_grad=True)
    b_t = torch.tensor(layer.params["bias"], requires_grad=True)
    y_t = torch.nn.functional.linear(x_t, w_t.T, b_t)  # torch stores (out, in); ours is (in, out)
    np.testing.assert_allclose(layer.forward(x), y_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    grad_y = rng.standard_normal((5, 4))
    y_t.backward(torch.tensor(grad_y))
    np.testing.assert_allclose(layer.backward(grad_y), x_t.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], w_t.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], b_t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_float32_conv_stays_float32_and_matches_torch(rng):
    layer = Conv2D(1, 32, 7, rng)  # the default dtype, as used for training
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32 and layer.backward(np.ones_like(y)).dtype == np.float32
    y_t = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(layer.params["weight"]))
    np.testing.assert_allclose(y, y_t.numpy(), rtol=1e-4, atol=1e-4)


def test_softmax_cross_entropy_matches_torch(rng):
    logits, labels = rng.standard_normal((6, 10)) * 5, rng.integers(0, 10, 6)
    expected = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels)).item()
    assert SoftmaxCrossEntropy().forward(logits, labels) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- hand-computed values

def test_softmax_cross_entropy_hand_value():
    logits = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits, np.array([2, 0]))
    first = math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3  # -log softmax of the label's logit
    second = math.log(3)  # uniform over three classes
    assert loss == pytest.approx((first + second) / 2, rel=1e-12)
    assert isinstance(loss, float)
    grad = loss_fn.backward()
    softmax = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(grad, [(softmax - [0, 0, 1]) / 2, [(1 / 3 - 1) / 2, 1 / 6, 1 / 6]], rtol=1e-12)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 0.0]])
    loss_fn = SoftmaxCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # exp(1000) or inf - inf would raise here
        loss = loss_fn.forward(logits, np.array([1, 0]))
        grad = loss_fn.backward()
    assert loss == pytest.approx((1000.0 + math.log(2)) / 2, rel=1e-12)
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [-0.25, 0.25, 0.0]], atol=1e-12)


@pytest.mark.parametrize("weight_decay, expected_weights, expected_biases", [
    # w: grad 0.5 both steps. step 1: buf = 0.5, w = 1 - 0.05 = 0.95; step 2: buf = 0.45 + 0.5, w = 0.95 - 0.095.
    # b: grad -1 both steps. step 1: b = 2 + 0.1; step 2: buf = -0.9 - 1, b = 2.1 + 0.19.
    (0.0, (0.95, 0.855), (2.1, 2.29)),
    # With decay 0.1, d = grad + 0.1 * param. w: d1 = 0.6, w1 = 0.94; d2 = 0.594, buf = 0.54 + 0.594, w2 = 0.8266.
    # b: d1 = -0.8, b1 = 2.08; d2 = -0.792, buf = -0.72 - 0.792 = -1.512, b2 = 2.2312.
    (0.1, (0.94, 0.8266), (2.08, 2.2312)),
])
def test_sgd_momentum_matches_hand_computed_steps(rng, weight_decay, expected_weights, expected_biases):
    layer = Dense(1, 1, rng, dtype=F64)
    model = Sequential([layer])
    layer.params["weight"][...] = 1.0
    layer.params["bias"][...] = 2.0
    optimizer = SGD(model, lr=0.1, momentum=0.9, weight_decay=weight_decay)
    for expected_w, expected_b in zip(expected_weights, expected_biases):
        layer.grads["weight"][...] = 0.5
        layer.grads["bias"][...] = -1.0
        optimizer.step()
        assert layer.params["weight"][0, 0] == pytest.approx(expected_w, abs=1e-12)
        assert layer.params["bias"][0] == pytest.approx(expected_b, abs=1e-12)


def test_sgd_lr_is_settable(rng):
    layer = Dense(1, 1, rng, dtype=F64)
    optimizer = SGD(Sequential([layer]), lr=0.1)
    layer.params["weight"][...] = 1.0
    layer.grads["weight"][...] = 1.0
    optimizer.lr = 0.01
    optimizer.step()
    assert layer.params["weight"][0, 0] == pytest.approx(0.99, abs=1e-12)


def test_step_decay():
    assert [step_decay(0.1, epoch) for epoch in (0, 4, 5, 9, 10)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert step_decay(1.0, 6, step_epochs=3, gamma=0.5) == pytest.approx(0.25)


# ---------------------------------------------------------------- builders, learner, checkpoints

def test_builders_shapes_and_dtype(rng):
    images = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    for model in (mlp(), cnn()):
        logits = model.forward(images)
        assert logits.shape == (3, 10) and logits.dtype == np.float32
    shapes = {key: value.shape for key, value in cnn(channels=8, kernel_size=5).state_dict().items()}
    assert shapes == {"0.weight": (8, 1, 5, 5), "0.bias": (8,), "3.weight": (8 * 24 * 24, 10), "3.bias": (10,)}
    shapes = {key: value.shape for key, value in mlp(hidden=50).state_dict().items()}
    assert shapes == {"1.weight": (784, 50), "1.bias": (50,), "3.weight": (50, 10), "3.bias": (10,)}


def test_he_init_scale():
    weight = Dense(1000, 500, np.random.default_rng(0)).params["weight"]
    assert weight.std() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)


def test_logits_in_chunks_equal_one_forward(rng):
    model = cnn(image_size=12, channels=4, kernel_size=3)
    images = rng.standard_normal((7, 1, 12, 12)).astype(np.float32)
    classifier = NumpyClassifier(model, lr=0.1)
    # float32 BLAS sums in a shape-dependent order, so chunks agree to rounding, not bit for bit.
    np.testing.assert_allclose(classifier.logits(images, batch_size=3), model.forward(images), rtol=1e-5, atol=1e-6)
    assert classifier.logits(images[:0]).shape == (0, 10)


def small_cnn_batch(rng: np.random.Generator, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((n, 1, 10, 10)).astype(np.float32), rng.integers(0, 10, n)


def test_update_returns_metrics_and_same_seed_is_deterministic(rng):
    batches = [small_cnn_batch(rng) for _ in range(3)]
    runs = []
    for _ in range(2):
        classifier = NumpyClassifier(cnn(image_size=10, channels=4, kernel_size=3, seed=3), lr=0.05, momentum=0.9)
        runs.append([classifier.update(batch) for batch in batches])
    assert runs[0] == runs[1]
    assert all(set(metrics) == {"losses/loss", "charts/accuracy", "charts/learning_rate"} for metrics in runs[0])
    assert all(type(value) is float for value in runs[0][0].values())
    # The metrics describe the batch as the model saw it, before the step.
    classifier = NumpyClassifier(cnn(image_size=10, channels=4, kernel_size=3, seed=3), lr=0.05)
    images, labels = batches[0]
    logits = classifier.logits(images)
    metrics = classifier.update((images, labels))
    assert metrics["losses/loss"] == pytest.approx(SoftmaxCrossEntropy().forward(logits, labels), rel=1e-6)
    assert metrics["charts/accuracy"] == np.mean(logits.argmax(axis=1) == labels)
    assert metrics["charts/learning_rate"] == 0.05
    assert not np.array_equal(classifier.logits(images), logits)  # and it did step


def to_torch(tree):
    """Every array in nested dicts as a torch tensor (plain floats stay floats)."""
    if isinstance(tree, dict):
        return {key: to_torch(value) for key, value in tree.items()}
    return torch.from_numpy(tree) if isinstance(tree, np.ndarray) else tree


@pytest.mark.parametrize("as_torch", [False, True])
def test_state_dict_round_trip(rng, as_torch):
    def make(seed: int) -> NumpyClassifier:
        return NumpyClassifier(cnn(image_size=10, channels=4, kernel_size=3, seed=seed), lr=0.05, momentum=0.9)

    source = make(seed=0)
    for _ in range(2):
        source.update(small_cnn_batch(rng))
    source.set_lr(0.02)
    state = source.state_dict()
    if as_torch:  # the caller's checkpoint code may hand every value back as a torch tensor
        state = to_torch(state)
        assert isinstance(state["optimizer"]["momentum_buffers"]["0.weight"], torch.Tensor)
    target = make(seed=1)
    images, labels = small_cnn_batch(rng)
    assert not np.array_equal(target.logits(images), source.logits(images))
    target.load_state_dict(state)
    np.testing.assert_array_equal(target.logits(images), source.logits(images))
    # Momentum buffers and lr came along too: the next step is identical.
    assert target.update((images, labels)) == source.update((images, labels))
    np.testing.assert_array_equal(target.logits(images), source.logits(images))


def test_state_dict_is_a_copy(rng):
    classifier = NumpyClassifier(cnn(image_size=10, channels=4, kernel_size=3), lr=0.05, momentum=0.9)
    state = classifier.state_dict()
    before = state["model"]["0.weight"].copy()
    classifier.update(small_cnn_batch(rng))
    np.testing.assert_array_equal(state["model"]["0.weight"], before)


def test_load_state_dict_rejects_mismatches():
    model = cnn(image_size=10, channels=4, kernel_size=3)
    state = model.state_dict()
    with pytest.raises(ValueError, match=r"0\.weight.*\(4, 1, 3, 3\)"):
        model.load_state_dict({**state, "0.weight": np.zeros((4, 1, 5, 5))})
    with pytest.raises(ValueError, match=r"3\.bias"):
        model.load_state_dict({key: value for key, value in state.items() if key != "3.bias"})
    with pytest.raises(ValueError, match="extra"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    optimizer = SGD(model, lr=0.1, momentum=0.9)
    opt_state = optimizer.state_dict()
    opt_state["momentum_buffers"]["3.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"3\.bias"):
        optimizer.load_state_dict(opt_state)
    # A failed load changes nothing, even when only the optimizer's part of a classifier state is wrong.
    classifier = NumpyClassifier(model, lr=0.1, momentum=0.9)
    bad = classifier.state_dict()
    bad["model"]["0.weight"] += 1.0
    bad["optimizer"]["momentum_buffers"]["0.bias"] = np.zeros(5)
    with pytest.raises(ValueError, match=r"0\.bias"):
        classifier.load_state_dict(bad)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[key])


def test_mlp_learns_separable_problem():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 20)) * 3
    labels = rng.integers(0, 4, 512)
    images = (centers[labels] + rng.standard_normal((512, 20))).astype(np.float32).reshape(512, 1, 4, 5)
    classifier = NumpyClassifier(mlp(in_features=20, hidden=32, num_classes=4, seed=0), lr=0.05, momentum=0.9)
    loss_fn = SoftmaxCrossEntropy()
    initial = loss_fn.forward(classifier.logits(images), labels)
    for _ in range(300):
        batch = rng.integers(0, 512, 64)
        metrics = classifier.update((images[batch], labels[batch]))
    assert metrics["charts/accuracy"] > 0.95 and metrics["losses/loss"] < 0.2
    final_logits = classifier.logits(images)
    final = loss_fn.forward(final_logits, labels)
    assert final < 0.1 * initial and final < 0.1, (initial, final)
    assert (final_logits.argmax(axis=1) == labels).mean() > 0.98


# ---------------------------------------------------------------- no torch in the module

def test_module_does_not_import_torch():
    path = Path(numpy_nn.__file__)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "torch" not in imported and "scipy" not in imported, imported
    # Nor anything it imports: load the file on its own (not through packages others may change) in a fresh process.
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('numpy_nn', sys.argv[1]); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
            "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'scipy')) or 0)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
