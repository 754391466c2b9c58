"""Hessian-free optimization (Martens 2010) and L-BFGS for the supervised learner: the Gauss-Newton product against
the exact Hessian where the two coincide, CG against a direct solve, the damping rule, one step on a small net, and
both optimizers through train.py, --resume and evaluate.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import evaluate
import train
from rlkit.checkpoint import load_checkpoint
from rlkit.data import make_tiny_dataset
from rlkit.errors import UserError
from rlkit.optim import check_optimizer_states
from rlkit.supervised import hessian_free
from rlkit.supervised.classifier import Classifier, ClassifierConfig
from rlkit.supervised.hessian_free import (HessianFree, SigmoidCrossEntropy, SoftmaxCrossEntropy, SquaredError,
                                           adjust_damping, conjugate_gradient, flatten, gauss_newton_product,
                                           module_outputs, unflatten)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return make_tiny_dataset("mnist", tmp_path_factory.mktemp("mnist"), train=64, test=32, seed=0)


def exact_hessian(net: nn.Module, loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Hessian of the batch loss with respect to all of ``net``'s parameters, flattened (P, P)."""
    params = tuple(p.detach() for p in net.parameters())
    outputs = module_outputs(net, x)

    def f(flat: torch.Tensor) -> torch.Tensor:
        return loss(outputs(unflatten(flat, params)), y)

    return torch.autograd.functional.hessian(f, flatten(params))


@pytest.mark.parametrize("loss,targets", [
    (SquaredError(), lambda: torch.randn(6, 3, dtype=torch.float64)),
    (SoftmaxCrossEntropy(), lambda: torch.randint(0, 3, (6,))),
    (SoftmaxCrossEntropy(label_smoothing=0.2), lambda: torch.randint(0, 3, (6,))),
    (SigmoidCrossEntropy(), lambda: torch.rand(6, 3, dtype=torch.float64)),
], ids=["squared", "softmax", "softmax-smoothed", "sigmoid"])
def test_gauss_newton_product_of_a_linear_net_is_the_hessian_product(loss, targets):
    """Outputs linear in the parameters: the term of the Hessian that Gauss-Newton drops (second derivatives of the
    outputs) is zero, so G v is the Hessian-vector product exactly."""
    torch.manual_seed(0)
    net = nn.Linear(4, 3).double()
    x, y = torch.randn(6, 4, dtype=torch.float64), targets()
    G = gauss_newton_product(module_outputs(net, x), tuple(net.parameters()), loss)
    H = exact_hessian(net, loss, x, y)
    for _ in range(3):
        v = torch.randn(H.shape[0], dtype=torch.float64)
        torch.testing.assert_close(G(v), H @ v, rtol=1e-10, atol=1e-12)


def test_gauss_newton_product_of_a_nonlinear_net_is_jacobian_transpose_loss_hessian_jacobian():
    """A sigmoid net, where G differs from the Hessian: G v equals Jᵀ H_L J v with J and H_L formed explicitly by
    reverse-mode autograd (the Jacobian of the outputs, the Hessian of the loss in the outputs)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Sigmoid(), nn.Linear(5, 4)).double()
    x, y = torch.randn(7, 3, dtype=torch.float64), torch.rand(7, 4, dtype=torch.float64)
    loss = SigmoidCrossEntropy()
    params = tuple(p.detach() for p in net.parameters())
    outputs = module_outputs(net, x)
    z = outputs(params)
    J = torch.autograd.functional.jacobian(lambda flat: outputs(unflatten(flat, params)).reshape(-1), flatten(params))
    H_L = torch.autograd.functional.hessian(lambda out: loss(out.view_as(z), y), z.detach().reshape(-1))
    G = gauss_newton_product(outputs, params, loss)
    v = torch.randn(J.shape[1], dtype=torch.float64)
    torch.testing.assert_close(G(v), J.T @ H_L @ J @ v, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(G(v), exact_hessian(net, loss, x, y) @ v)  # the term Gauss-Newton drops is not 0


def test_gauss_newton_of_squared_error_is_jacobian_transpose_jacobian_by_hand():
    """y = w x (one weight, no bias), loss ½ (w x - t)² over 2 cases, averaged: G = (x1² + x2²) / 2."""
    net = nn.Linear(1, 1, bias=False).double()
    x = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    G = gauss_newton_product(module_outputs(net, x), tuple(net.parameters()), SquaredError())
    assert G(torch.tensor([2.0], dtype=torch.float64)).item() == pytest.approx(2.0 * (1 + 9) / 2)


def test_gauss_newton_is_symmetric_positive_semidefinite_with_dropout_held_fixed():
    """A nonlinear net with dropout: with one seed every pass draws the same masks, so G is one symmetric matrix
    (uᵀ G v = vᵀ G u) and vᵀ G v >= 0, unlike the Hessian."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 4)).double()
    x = torch.randn(10, 5, dtype=torch.float64)
    outputs = module_outputs(net, x, seed=3)
    torch.testing.assert_close(outputs(tuple(net.parameters())), outputs(tuple(net.parameters())))
    G = gauss_newton_product(outputs, tuple(net.parameters()), SoftmaxCrossEntropy())
    n = sum(p.numel() for p in net.parameters())
    u, v = torch.randn(n, dtype=torch.float64), torch.randn(n, dtype=torch.float64)
    assert (u @ G(v)).item() == pytest.approx((v @ G(u)).item(), rel=1e-9)
    assert (v @ G(v)).item() >= 0


def test_conjugate_gradient_solves_a_two_by_two_system_in_two_iterations():
    """[[4, 1], [1, 3]] x = [1, 2]: x = [1/11, 7/11]; CG is exact after n = 2 iterations, where
    φ(x) = ½xᵀAx - bᵀx = -½ bᵀx = -15/22."""
    A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    kept, iterations = conjugate_gradient(lambda v: A @ v, b, torch.zeros(2, dtype=torch.float64), 10)
    assert iterations == 2
    i, x, phi = kept[-1]
    assert i == 2
    torch.testing.assert_close(x, torch.tensor([1 / 11, 7 / 11], dtype=torch.float64))
    assert phi == pytest.approx(-15 / 22)


def test_conjugate_gradient_solves_an_spd_system_and_keeps_iterates_geometrically():
    torch.manual_seed(0)
    M = torch.randn(30, 30, dtype=torch.float64)
    A = M @ M.T + 0.5 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, dtype=torch.float64)
    kept, iterations = conjugate_gradient(lambda v: A @ v, b, torch.zeros(30, dtype=torch.float64), 200,
                                          tolerance=1e-12)
    x = kept[-1][1]
    assert torch.linalg.norm(A @ x - b) < 1e-6 * torch.linalg.norm(b)
    indices = [i for i, _, _ in kept]
    # ceil(1.3^j): 1, 2, 3, 4, 5, 7, 9, 11, 14, 18, 24, ... then the last iteration
    assert indices[:11] == [1, 2, 3, 4, 5, 7, 9, 11, 14, 18, 24][:len(indices[:11])]
    assert indices[-1] == iterations
    phis = [phi for _, _, phi in kept]
    assert all(a >= b for a, b in zip(phis, phis[1:]))  # CG decreases φ monotonically


def test_conjugate_gradient_from_a_warm_start_at_the_solution_stops_at_once():
    A = torch.diag(torch.tensor([2.0, 5.0], dtype=torch.float64))
    b = torch.tensor([4.0, 5.0], dtype=torch.float64)
    kept, iterations = conjugate_gradient(lambda v: A @ v, b, torch.tensor([2.0, 1.0], dtype=torch.float64), 10)
    assert iterations == 0 and torch.equal(kept[-1][1], torch.tensor([2.0, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("rho,expected", [(-1.0, 1.5), (0.1, 1.5), (0.25, 1.0), (0.5, 1.0), (0.75, 1.0),
                                          (0.9, 2 / 3), (1.0, 2 / 3)])
def test_levenberg_marquardt_rule_by_hand(rho, expected):
    assert adjust_damping(1.0, rho) == pytest.approx(expected)


def _small_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    return net, torch.randn(64, 6), torch.randint(0, 3, (64,))


def _step(optimizer: HessianFree, net: nn.Module, x, y, loss, closure=None) -> dict[str, float]:
    optimizer.zero_grad()
    loss(net(x), y).backward()
    outputs = module_outputs(net, x)
    params = tuple(net.parameters())
    return optimizer.step(closure or (lambda: loss(outputs(params), y)), outputs, loss)


def test_one_hessian_free_step_decreases_the_loss_of_a_small_net():
    net, x, y = _small_net()
    loss = SoftmaxCrossEntropy()
    before = loss(net(x), y).item()
    optimizer = HessianFree(list(net.parameters()), max_cg_iterations=50)
    info = _step(optimizer, net, x, y, loss)
    after = loss(net(x), y).item()
    assert info["loss_before"] == pytest.approx(before) and info["loss_after"] == pytest.approx(after)
    assert after < before - 1e-3
    assert info["cg_iterations"] >= 1 and info["step_size"] > 0
    state = optimizer.state_dict()  # what a checkpoint holds: λ and the warm start of the next CG
    assert state["param_groups"][0]["damping"] == adjust_damping(1.0, info["reduction_ratio"])
    assert len(state["state"]) == 4 and all("direction" in s for s in state["state"].values())


def test_on_a_quadratic_rho_is_one_and_the_damping_drops():
    """A linear net with squared error: the loss is its own quadratic model (G is its Hessian), so the loss falls by
    exactly what the undamped model predicts: ρ = 1 > 3/4 and λ x 2/3."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    optimizer = HessianFree(list(net.parameters()), damping=0.5, max_cg_iterations=3, line_search=False)
    info = _step(optimizer, net, x, y, SquaredError())
    assert info["reduction_ratio"] == pytest.approx(1.0, rel=1e-9)
    assert optimizer.param_groups[0]["damping"] == pytest.approx(0.5 * 2 / 3)


def test_a_step_the_model_mispredicts_raises_the_damping_and_the_line_search_rejects_it():
    """A closure whose loss grows at every trial point, by 100 times the distance moved (ρ < 0): λ x 3/2, and the
    Armijo search finds no step."""
    net, x, y = _small_net()
    loss = SoftmaxCrossEntropy()
    start = [p.detach().clone() for p in net.parameters()]
    outputs = module_outputs(net, x)

    def worse_away_from_start() -> torch.Tensor:
        moved = sum((p - s).pow(2).sum() for p, s in zip(net.parameters(), start)).sqrt()
        return loss(outputs(tuple(net.parameters())), y) + 100 * moved

    optimizer = HessianFree(list(net.parameters()), damping=2.0, max_cg_iterations=20)
    info = _step(optimizer, net, x, y, loss, closure=worse_away_from_start)
    assert info["reduction_ratio"] < 0.25 and optimizer.param_groups[0]["damping"] == pytest.approx(3.0)
    assert info["step_size"] == 0.0 and info["loss_after"] == info["loss_before"]
    for p, s in zip(net.parameters(), start):
        assert torch.equal(p.detach(), s)


def test_the_next_cg_starts_from_the_decayed_last_solution(monkeypatch):
    net, x, y = _small_net()
    loss = SoftmaxCrossEntropy()
    optimizer = HessianFree(list(net.parameters()), max_cg_iterations=5, cg_decay=0.5)
    _step(optimizer, net, x, y, loss)
    last = flatten([optimizer.state[p]["direction"] for p in net.parameters()])
    starts = []

    def spy(A, b, x0, *args, **kwargs):
        starts.append(x0.clone())
        return conjugate_gradient(A, b, x0, *args, **kwargs)

    monkeypatch.setattr(hessian_free, "conjugate_gradient", spy)
    _step(optimizer, net, x, y, loss)
    torch.testing.assert_close(starts[0], 0.5 * last)


def test_weight_decay_is_part_of_the_objective_and_its_curvature():
    """With weight decay d, HF minimizes loss + ½ d ||θ||²; at its minimum over a linear least-squares problem that
    is ridge regression, solved here in closed form."""
    torch.manual_seed(0)
    net = nn.Linear(3, 1, bias=False).double()
    x, y = torch.randn(40, 3, dtype=torch.float64), torch.randn(40, 1, dtype=torch.float64)
    decay = 0.3
    optimizer = HessianFree(list(net.parameters()), damping=1e-6, max_cg_iterations=10, weight_decay=decay)
    for _ in range(3):
        _step(optimizer, net, x, y, SquaredError())
    ridge = torch.linalg.solve(x.T @ x / 40 + decay * torch.eye(3, dtype=torch.float64), x.T @ y / 40)
    torch.testing.assert_close(net.weight.detach().T, ridge, rtol=1e-6, atol=1e-8)


def test_classifier_checkpoint_holds_and_restores_the_hessian_free_state():
    config = ClassifierConfig(optimizer="hessian-free", hf_cg_iterations=5, dropout=0.0)
    net, x, y = _small_net()
    learner = Classifier(net, config, 1, torch.device("cpu"))
    metrics = learner.update((x, y))
    assert {"charts/damping", "charts/reduction_ratio", "charts/cg_iterations"} <= set(metrics)
    assert "charts/learning_rate" not in metrics  # hessian-free has none
    state = learner.state_dict()
    other = Classifier(_small_net()[0], config, 1, torch.device("cpu"))
    other.load_state_dict(state)
    check_optimizer_states(other)
    assert other.optimizer.param_groups[0]["damping"] == learner.optimizer.param_groups[0]["damping"] != 1.0
    for p, q in zip(learner.params, other.params):
        assert torch.equal(learner.optimizer.state[p]["direction"], other.optimizer.state[q]["direction"])
    torch.manual_seed(5)
    a = learner.update((x, y))
    torch.manual_seed(5)
    b = other.update((x, y))
    assert a == b  # resumed, the next step is the same step


def test_lbfgs_classifier_lowers_the_loss_of_its_batch():
    net, x, y = _small_net()
    learner = Classifier(net, ClassifierConfig(optimizer="lbfgs", learning_rate=1.0, lbfgs_iterations=10), 1,
                         torch.device("cpu"))
    first = learner.update((x, y))["losses/loss"]
    assert torch.nn.functional.cross_entropy(net(x), y).item() < first - 0.05
    assert learner.optimizer.state_dict()["state"][0]["n_iter"] == 10


@pytest.mark.parametrize("fields,message", [
    ({"optimizer": "lbfgs", "max_grad_norm": 1.0}, "--max-grad-norm 0"),
    ({"optimizer": "hessian-free", "max_grad_norm": 1.0}, "--max-grad-norm 0"),
    ({"optimizer": "hessian-free", "schedule": "cosine"}, "--schedule constant"),
    ({"optimizer": "hessian-free", "compile": True}, "drop --compile"),
    ({"optimizer": "hessian-free", "hf_damping": 0.0}, "--hf-damping must be > 0"),
    ({"optimizer": "hessian-free", "hf_cg_decay": 1.5}, "--hf-cg-decay must be in [0, 1]"),
    ({"optimizer": "lbfgs", "lbfgs_iterations": 0}, "--lbfgs-iterations must be at least 1"),
])
def test_combinations_that_make_no_sense_are_one_line(fields, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ClassifierConfig(**fields)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_help_names_both_optimizers_and_their_flags():
    out = _cli("--task", "mnist", "--net", "cnn", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for flag in ("lbfgs", "hessian-free", "--hf-damping", "--hf-cg-iterations", "--hf-cg-decay",
                 "--hf-curvature-batch", "--no-hf-line-search", "--lbfgs-iterations", "--lbfgs-history"):
        assert flag in text, flag


def test_hessian_free_refuses_a_learning_rate_flag(mnist_dir, tmp_path):
    out = _cli("--task", "mnist", "--net", "cnn", "--optimizer", "hessian-free", "--learning-rate", "0.1",
               "--data-dir", str(mnist_dir), "--run-dir", str(tmp_path / "r"), "--no-progress")
    assert out.returncode == 2 and "drop --learning-rate" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("optimizer,flags", [
    ("hessian-free", ["--hf-cg-iterations", "8", "--hf-curvature-batch", "8"]),
    ("lbfgs", ["--learning-rate", "1", "--lbfgs-iterations", "4"]),
])
def test_train_resume_and_evaluate_with_a_second_order_optimizer(optimizer, flags, mnist_dir, tmp_path):
    run = tmp_path / "run"
    common = ["--task", "mnist", "--net", "cnn", "--width", "0.125", "--batch-size", "16", "--no-augment",
              "--data-dir", str(mnist_dir), "--no-progress", "--threads", "1"]
    train.main([*common, "--optimizer", optimizer, *flags, "--max-steps", "2", "--run-dir", str(run)])
    checkpoint = load_checkpoint(run)
    assert checkpoint["config"]["optimizer"] == optimizer and checkpoint["loop"]["steps"] == 2
    saved = checkpoint["learner"]["optimizer"]
    if optimizer == "hessian-free":
        assert "damping" in saved["param_groups"][0] and all("direction" in s for s in saved["state"].values())
    train.main(["--resume", str(run), "--max-steps", "4", "--no-progress"])
    resumed = load_checkpoint(run)
    assert resumed["loop"]["steps"] == 4
    lines = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    result = evaluate.main([str(run), "--json"])
    assert result["steps"] == 4 and result["accuracy"] == lines[-1]["eval/accuracy"]
    assert math.isfinite(lines[-1]["eval/nll"])


def test_a_crafted_lbfgs_state_of_the_wrong_length_is_one_line():
    net, x, y = _small_net()
    learner = Classifier(net, ClassifierConfig(optimizer="lbfgs", learning_rate=1.0, lbfgs_iterations=2), 1,
                         torch.device("cpu"))
    learner.update((x, y))
    check_optimizer_states(learner)  # a state L-BFGS wrote fits
    learner.optimizer.state[learner.params[0]]["d"] = torch.zeros(5)
    with pytest.raises(UserError, match=r"d of parameter 0 has shape \(5,\)"):
        check_optimizer_states(learner)


def test_a_net_without_forward_mode_derivatives_is_refused_in_one_line():
    """PyTorch's CPU LSTM kernel has no forward-mode derivative, which the Gauss-Newton product needs."""
    from rlkit.nets.recurrent import SequenceClassifier

    net = SequenceClassifier(3, 1, 6, hidden=4, cell="lstm", dropout=0.0)
    learner = Classifier(net, ClassifierConfig(optimizer="hessian-free", hf_cg_iterations=2), 1, torch.device("cpu"))
    with pytest.raises(UserError, match="forward-mode derivatives .* pick another --optimizer"):
        learner.update((torch.randn(4, 1, 6, 6), torch.randint(0, 3, (4,))))


def test_lbfgs_without_a_learning_rate_takes_torchs_step_of_one(tmp_path):
    """Adam's 1e-3 as L-BFGS's first trial step made every line search start far too short."""
    from rlkit.cli.train import prepare

    run = prepare(["--task", "mnist", "--net", "cnn", "--optimizer", "lbfgs", "--run-dir", str(tmp_path / "r")])
    assert run.config.learning_rate == 1.0
    run = prepare(["--task", "mnist", "--net", "cnn", "--optimizer", "lbfgs", "--learning-rate", "0.5",
                   "--run-dir", str(tmp_path / "s")])
    assert run.config.learning_rate == 0.5
    run = prepare(["--task", "mnist", "--net", "cnn", "--run-dir", str(tmp_path / "t")])
    assert run.config.learning_rate != 1.0
