"""The exact policy gradient of a small MDP against REINFORCE's estimate of it, and gradient ascent with each.

The MDP is a 4-state chain (``chain_mdp``): in each state "quit" ends the episode with a small reward (0.5 in the
first state, 0.1 elsewhere) and "advance" moves one state on (it slips and stays with probability 0.2); advancing
from the last state ends the episode with reward 1. Episodes start in a uniformly random state (a start
distribution with full support, under which exact softmax ascent reaches the optimum, Agarwal et al. 2021); gamma
0.9. The policy is the tabular softmax pi(a|s) proportional to exp theta[s, a]; J, its gradient and J* are
computed exactly (rlkit.analysis.mdp).

(a) At theta = 0 (the uniform policy): the norm of the error of the mean of N REINFORCE estimates, root mean square
over independent repeats, against N, without a baseline, with the exact V(s), with a per-state running mean, and
without the gamma^t factor (biased); next to sqrt(tr Sigma / N), what an unbiased estimator with per-episode
covariance Sigma gives. (b) J(theta_k) of gradient ascent from theta = 0 with the exact gradient and with
REINFORCE (a few episodes per step) under a constant and a Robbins-Monro step size, next to J*; (c) J* - J(theta_k)
of the same runs on log-log axes.

    python benchmarks/policy_gradient_exact.py              # about 30 s on one core, a PNG next to this file
    python benchmarks/policy_gradient_exact.py --repeats 5 --max-episodes 1024 --iterations 200 --seeds 2 --no-plot
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rlkit.analysis.mdp import (TabularMDP, expected_return, optimal_return, policy_gradient,
                                reinforce_estimates)

ESTIMATORS = {"no baseline": {"baseline": "none"}, "baseline V(s)": {"baseline": "value"},
              "running-mean baseline": {"baseline": "running-mean"},
              "no gamma^t (biased)": {"baseline": "none", "discount_weights": False}}


def chain_mdp(n_states: int = 4, slip: float = 0.2, gamma: float = 0.9) -> TabularMDP:
    """The chain described at the top of this file; action 0 quits, action 1 advances."""
    P, R = np.zeros((n_states, 2, n_states)), np.zeros((n_states, 2))
    R[:, 0] = 0.1
    R[0, 0] = 0.5  # a tempting early exit: under the uniform policy quitting at once looks better than advancing
    for s in range(n_states - 1):
        P[s, 1, s + 1], P[s, 1, s] = 1 - slip, slip
    R[-1, 1] = 1.0  # P[-1, 1] is all zeros: advancing from the last state ends the episode
    return TabularMDP(P, R, np.full(n_states, 1 / n_states), gamma)


def error_curves(mdp: TabularMDP, theta: np.ndarray, sizes: np.ndarray, repeats: int,
                 seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per estimator: the RMS over repeats of ||mean of the first N estimates - exact|| for each N in ``sizes``,
    and all the estimates of the first repeat, (max N, S, A)."""
    exact = policy_gradient(mdp, theta)
    rms, first = {}, {}
    for name, options in ESTIMATORS.items():
        squared = np.zeros(len(sizes))
        for r in range(repeats):
            # The same seed per repeat for every estimator: they see the same episodes, so they differ only in
            # what they make of them.
            g = reinforce_estimates(mdp, theta, int(sizes[-1]), np.random.default_rng([seed, r]), **options)
            means = g.cumsum(0)[sizes - 1] / sizes[:, None, None]
            squared += ((means - exact) ** 2).sum((1, 2))
            if r == 0:
                first[name] = g
        rms[name] = np.sqrt(squared / repeats)
    return rms, first


def ascent(mdp: TabularMDP, iterations: int, step_size, episodes: int | None, seed: int) -> np.ndarray:
    """J(theta_k), k = 1..iterations, of gradient ascent from theta = 0: the exact gradient (``episodes`` None) or
    the mean of ``episodes`` REINFORCE estimates per step, with ``step_size(k)``."""
    rng, theta = np.random.default_rng(seed), np.zeros((mdp.n_states, mdp.n_actions))
    returns = np.zeros(iterations)
    for k in range(iterations):
        gradient = (policy_gradient(mdp, theta) if episodes is None
                    else reinforce_estimates(mdp, theta, episodes, rng).mean(0))
        theta = theta + step_size(k) * gradient
        returns[k] = expected_return(mdp, theta)
    return returns


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50, help="independent repeats behind each point of (a)")
    parser.add_argument("--max-episodes", type=int, default=16384, help="largest N of (a)")
    parser.add_argument("--iterations", type=int, default=3000, help="ascent steps in (b)")
    parser.add_argument("--episodes-per-step", type=int, default=5, help="REINFORCE episodes per ascent step")
    parser.add_argument("--alpha", type=float, default=2.0, help="constant step size, and the first of the decaying")
    parser.add_argument("--decay", type=float, default=100.0, help="k0 of alpha / (1 + k / k0)^omega")
    parser.add_argument("--omega", type=float, default=0.6, help="omega of alpha / (1 + k / k0)^omega")
    parser.add_argument("--seeds", type=int, default=10, help="REINFORCE ascent runs per step size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("policy_gradient_exact.png")))
    args = parser.parse_args(argv)

    mdp = chain_mdp()
    theta0 = np.zeros((mdp.n_states, mdp.n_actions))
    exact = policy_gradient(mdp, theta0)
    j_star = optimal_return(mdp)
    print(f"J(0) = {expected_return(mdp, theta0):.4f}, J* = {j_star:.4f}, ||grad J(0)|| = "
          f"{np.linalg.norm(exact):.4f}")

    # (a) -----------------------------------------------------------------------------------------------------
    start = time.perf_counter()
    sizes = np.unique(np.geomspace(1, args.max_episodes, 40).astype(int))
    rms, first = error_curves(mdp, theta0, sizes, args.repeats, args.seed)
    fit = sizes >= 16
    print(f"\n(a) {args.repeats} repeats of up to {args.max_episodes} episodes per estimator "
          f"({time.perf_counter() - start:.1f}s)\n")
    print("| estimator | tr Sigma | slope of RMS error vs N (N >= 16) | RMS error at N = max | "
          "max over (s, a) of abs(mean - exact) / SE |")
    print("|---|---:|---:|---:|---:|")
    trace = {}
    for name, g in first.items():
        trace[name] = float(g.var(0, ddof=1).sum())
        z = np.abs(g.mean(0) - exact) / (g.std(0, ddof=1) / np.sqrt(len(g)))
        print(f"| {name} | {trace[name]:.4f} | {slope(sizes[fit], rms[name][fit]):.3f} | {rms[name][-1]:.5f} | "
              f"{z.max():.1f} |")
    print(f"\nvariance reduction tr Sigma(no baseline) / tr Sigma: V(s) "
          f"{trace['no baseline'] / trace['baseline V(s)']:.2f}x, running mean "
          f"{trace['no baseline'] / trace['running-mean baseline']:.2f}x")

    # (b), (c) --------------------------------------------------------------------------------------------------
    start = time.perf_counter()
    schedules = {f"constant {args.alpha:g}": lambda k: args.alpha,
                 f"{args.alpha:g} / (1 + k/{args.decay:g})^{args.omega:g}":
                     lambda k: args.alpha / (1 + k / args.decay) ** args.omega}
    curves = {f"exact gradient, constant {args.alpha:g}": ascent(mdp, args.iterations, schedules[
        f"constant {args.alpha:g}"], None, 0)[None]}
    for name, schedule in schedules.items():
        curves[f"REINFORCE, {args.episodes_per_step} episodes/step, {name}"] = np.stack(
            [ascent(mdp, args.iterations, schedule, args.episodes_per_step, args.seed + s) for s in range(args.seeds)])
    print(f"\n(b) J* - J(theta_k), median over {args.seeds} seeds for REINFORCE "
          f"({time.perf_counter() - start:.1f}s)\n")
    shown = [k for k in (10, 100, 1000, 3000, 10000) if k <= args.iterations]
    print("| ascent | " + " | ".join(f"k = {k:,}" for k in shown) + " | worst seed at the end |")
    print("|---|" + "---:|" * (len(shown) + 1))
    for name, runs in curves.items():
        gap = j_star - runs
        print(f"| {name} | " + " | ".join(f"{np.median(gap[:, k - 1]):.5f}" for k in shown)
              + f" | {gap[:, -1].max():.5f} |")
    tail = np.arange(args.iterations // 10, args.iterations) + 1
    for name, runs in curves.items():
        print(f"slope of log(J* - J) vs log k over the last 90%: {name}: "
              f"{slope(tail, np.median(j_star - runs, 0)[tail - 1]):.2f}")

    if not args.no_plot:
        plot(args.out, sizes, rms, trace, curves, j_star)
        print(f"\nplot: {args.out}")
    return {"sizes": sizes, "rms": rms, "trace": trace, "curves": curves, "j_star": j_star}


def plot(out: str, sizes: np.ndarray, rms: dict[str, np.ndarray], trace: dict[str, float],
         curves: dict[str, np.ndarray], j_star: float) -> None:
    """The three panels, as one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(15, 4.3))
    for name, color in zip(rms, ("C0", "C1", "C2", "C3")):
        ax_a.loglog(sizes, rms[name], color=color, label=name)
    for name in ("no baseline", "baseline V(s)"):
        ax_a.loglog(sizes, np.sqrt(trace[name] / sizes), "k:", lw=1)
    ax_a.plot([], [], "k:", lw=1, label=r"$\sqrt{\mathrm{tr}\,\Sigma / N}$")
    ax_a.set_xlabel("episodes N")
    ax_a.set_ylabel(r"RMS of $\|\bar g_N - \nabla J\|_2$")
    ax_a.set_title("(a) REINFORCE at the uniform policy")
    ax_a.legend(fontsize=8)

    k = np.arange(1, next(iter(curves.values())).shape[1] + 1)
    for (name, runs), color in zip(curves.items(), ("k", "C0", "C1")):
        median = np.median(runs, 0)
        ax_b.plot(k, median, color=color, label=name if len(runs) == 1 else f"{name} (median, min-max)")
        ax_c.loglog(k, j_star - median, color=color)
        if len(runs) > 1:
            ax_b.fill_between(k, runs.min(0), runs.max(0), color=color, alpha=0.2, lw=0)
            ax_c.fill_between(k, j_star - runs.max(0), j_star - runs.min(0), color=color, alpha=0.2, lw=0)
    ax_b.axhline(j_star, color="C3", ls="--", label=f"J* = {j_star:.4f} (value iteration)")
    ax_b.set_xscale("log")
    ax_b.set_xlabel("iteration k")
    ax_b.set_ylabel(r"$J(\theta_k)$")
    ax_b.set_title("(b) gradient ascent from the uniform policy")
    ax_b.legend(fontsize=7, loc="lower right")
    ax_c.loglog(k[9:], (j_star - curves[next(iter(curves))][0])[99] * 100 / k[9:], "k:", lw=1, label="1/k")
    ax_c.set_xlabel("iteration k")
    ax_c.set_ylabel(r"$J^* - J(\theta_k)$")
    ax_c.set_title("(c) the same runs: sub-optimality")
    ax_c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
