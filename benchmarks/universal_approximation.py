"""The universal approximation theorem, measured: one hidden layer of tanh units fitted to a 1-D function, the error
against the layer's width.

    OMP_NUM_THREADS=1 python benchmarks/universal_approximation.py

The target is f(x) = sin(3x) + 0.3 x^2 on [-2, 2] and, with a kink the net must bend around, |x| - 0.5 sin(5x). Each
net is rlkit's MLP encoder with one hidden layer of ``width`` tanh units and a linear output, trained full-batch
with Adam on 512 evenly spaced points, then scored on 4,001 points of the interval (RMS and max error). Widths 1 to
256, ``--seeds`` inits each. Prints the table and writes ``benchmarks/universal_approximation.png``: error against
width on log-log axes, and the fits of a few widths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from rlkit.nets import make_encoder  # noqa: E402

TARGETS = {
    "sin(3x) + 0.3x^2": lambda x: torch.sin(3 * x) + 0.3 * x ** 2,
    "|x| - 0.5 sin(5x)": lambda x: x.abs() - 0.5 * torch.sin(5 * x),
}
WIDTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OUT = Path(__file__).resolve().parent / "universal_approximation.png"


def one_hidden_layer(width: int) -> nn.Module:
    encoder = make_encoder((1,), hidden=(width,), activation=nn.Tanh)
    return nn.Sequential(encoder, nn.Linear(encoder.out_features, 1))


def fit(target, width: int, seed: int, steps: int) -> tuple[nn.Module, float, float]:
    """Train one net; its (net, RMS error, max error) on the dense grid."""
    torch.manual_seed(seed)
    net = one_hidden_layer(width)
    x = torch.linspace(-2, 2, 512).unsqueeze(1)
    y = target(x)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (net(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
        schedule.step()
    grid = torch.linspace(-2, 2, 4001).unsqueeze(1)
    with torch.no_grad():
        error = net(grid) - target(grid)
    return net, float(error.pow(2).mean().sqrt()), float(error.abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4000, help="Adam steps per net (full batch)")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(TARGETS), figsize=(6 * len(TARGETS), 8))
    for column, (name, target) in enumerate(TARGETS.items()):
        print(f"\n{name}\n| width | RMS error (mean over seeds) | max error (mean) | best seed's max error |")
        print("|---|---|---|---|")
        rms_means, max_means, shown = [], [], {}
        for width in WIDTHS:
            results = [fit(target, width, seed, args.steps) for seed in range(args.seeds)]
            rms, worst = np.array([r[1] for r in results]), np.array([r[2] for r in results])
            rms_means.append(rms.mean())
            max_means.append(worst.mean())
            shown[width] = results[int(worst.argmin())][0]
            print(f"| {width} | {rms.mean():.2e} | {worst.mean():.2e} | {worst.min():.2e} |", flush=True)
        slope = np.polyfit(np.log(WIDTHS[2:]), np.log(rms_means[2:]), 1)[0]
        print(f"RMS error ~ width^{slope:.2f} (fit over widths >= 4)")
        ax = axes[0, column]
        ax.loglog(WIDTHS, rms_means, "o-", label="RMS error")
        ax.loglog(WIDTHS, max_means, "s-", label="max error")
        ax.set_title(f"{name}: error against width (slope {slope:.2f})")
        ax.set_xlabel("hidden tanh units")
        ax.legend()
        ax = axes[1, column]
        grid = torch.linspace(-2, 2, 801).unsqueeze(1)
        ax.plot(grid.squeeze(), target(grid).squeeze(), "k", lw=3, alpha=0.4, label="target")
        with torch.no_grad():
            for width in (1, 2, 4, 16):
                ax.plot(grid.squeeze(), shown[width](grid).squeeze(), label=f"width {width}")
        ax.set_xlabel("x")
        ax.legend()
    fig.tight_layout()
    fig.savefig(OUT, dpi=70)
    print(f"\n{OUT}")


if __name__ == "__main__":
    main()
