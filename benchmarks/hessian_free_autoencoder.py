"""Hessian-free against Adam and SGD with momentum on Hinton and Salakhutdinov's (2006) MNIST deep autoencoder,
Martens' (2010) benchmark: training reconstruction error against epochs and wall time.

    OMP_NUM_THREADS=1 python benchmarks/hessian_free_autoencoder.py --data-dir ../shared/data/mnist

The net is 784-1000-500-250-30-250-500-1000-784 (``--sizes`` sets the encoder's widths; the decoder mirrors it):
logistic hidden units, a linear 30-unit code layer, and logistic outputs trained by cross-entropy against the pixel
intensities in [0, 1] (summed over pixels, averaged over images), as Martens. Every optimizer starts from Martens'
sparse initialization (15 nonzero incoming weights per unit, drawn from N(0, 1); biases 0). Each optimizer trains
for ``--seconds`` of wall time (evaluation not counted) on the first ``--train-images`` training images. Every
``--eval-seconds`` of training, the reconstruction error (squared error per image summed over the 784 pixels, as
the papers report it) is measured on ``--eval-images`` of those training images and on as many test images.

Writes ``benchmarks/hessian_free_autoencoder.jsonl`` (one line per evaluation) and ``.png`` (error against epochs
and against seconds), and prints the last point of each optimizer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from rlkit.data.idx import read_idx  # noqa: E402
from rlkit.supervised.hessian_free import HessianFree, SigmoidCrossEntropy, module_outputs  # noqa: E402

OUT = Path(__file__).resolve().parent / "hessian_free_autoencoder"


def autoencoder(sizes: list[int]) -> nn.Sequential:
    """784 -> sizes -> mirrored back to 784: logistic units except the linear code layer and the output logits."""
    widths = [784, *sizes, *reversed(sizes[:-1]), 784]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        code_or_output = i == len(sizes) - 1 or i == len(widths) - 2
        if not code_or_output:
            layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


@torch.no_grad()
def sparse_init_(net: nn.Module, nonzeros: int = 15) -> None:
    """Martens' sparse initialization: each unit gets ``nonzeros`` incoming weights from N(0, 1), the rest 0."""
    for layer in net.modules():
        if isinstance(layer, nn.Linear):
            layer.weight.zero_()
            layer.bias.zero_()
            for row in layer.weight:
                row[torch.randperm(len(row))[:nonzeros]] = torch.randn(min(nonzeros, len(row)))


@torch.no_grad()
def reconstruction_error(net: nn.Module, images: torch.Tensor) -> float:
    """Squared error per image, summed over pixels."""
    return float((net(images).sigmoid() - images).pow(2).sum(1).mean())


def load(data_dir: Path, split: str, count: int) -> torch.Tensor:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz")[:count]
    return torch.from_numpy(images.reshape(len(images), -1)).float() / 255


def train(method: str, args: argparse.Namespace, train_images: torch.Tensor, eval_train: torch.Tensor,
          eval_test: torch.Tensor) -> list[dict]:
    torch.manual_seed(args.seed)
    net = autoencoder(args.sizes)
    sparse_init_(net)
    loss = SigmoidCrossEntropy()
    params = list(net.parameters())
    if method == "hessian-free":
        optimizer = HessianFree(params, damping=args.hf_damping, max_cg_iterations=args.hf_cg_iterations)
        batch_size = args.hf_batch
    elif method == "adam":
        optimizer, batch_size = torch.optim.Adam(params, lr=args.adam_lr), args.batch
    else:
        optimizer, batch_size = torch.optim.SGD(params, lr=args.sgd_lr, momentum=0.9), args.batch
    def point(seen: int, seconds: float) -> dict:
        entry = {"method": method, "epoch": round(seen / len(train_images), 3), "seconds": round(seconds, 2),
                 "train_error": reconstruction_error(net, eval_train),
                 "test_error": reconstruction_error(net, eval_test)}
        if method == "hessian-free":
            entry["damping"] = optimizer.param_groups[0]["damping"]
        print(json.dumps(entry), flush=True)
        return entry

    points, seen, seconds = [point(0, 0.0)], 0, 0.0
    while seconds < args.seconds:
        order = torch.randperm(len(train_images))
        for first in range(0, len(order) - batch_size + 1, batch_size):
            start = time.perf_counter()
            x = train_images[order[first:first + batch_size]]
            optimizer.zero_grad()
            loss(net(x), x).backward()
            if method == "hessian-free":
                outputs = module_outputs(net, x)
                curvature = module_outputs(net, x[:args.hf_curvature_batch])
                optimizer.step(lambda: loss(outputs(tuple(params)), x), curvature, loss)
            else:
                optimizer.step()
            seen += batch_size
            seconds += time.perf_counter() - start  # training time only: evaluations are not counted
            if seconds >= args.seconds or seconds // args.eval_seconds > points[-1]["seconds"] // args.eval_seconds:
                points.append(point(seen, seconds))
            if seconds >= args.seconds:
                break
    return points


def plot(points: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in dict.fromkeys(p["method"] for p in points):
        mine = [p for p in points if p["method"] == method]
        for ax, x in zip(axes, ("epoch", "seconds")):
            ax.plot([p[x] for p in mine], [p["train_error"] for p in mine], marker=".", label=method)
    for ax, x in zip(axes, ("epochs", "wall seconds (training only)")):
        ax.set_xlabel(x)
        ax.set_ylabel("training squared error per image")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT.with_suffix(".png"), dpi=70)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data/mnist"), help="the MNIST IDX files")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 500, 250, 30], help="encoder widths")
    parser.add_argument("--train-images", type=int, default=60_000, help="train on the first N training images")
    parser.add_argument("--eval-images", type=int, default=2_000, help="training (and test) images scored")
    parser.add_argument("--seconds", type=float, default=600, help="training wall time per optimizer")
    parser.add_argument("--eval-seconds", type=float, default=10, help="training seconds between evaluations")
    parser.add_argument("--methods", nargs="+", default=["hessian-free", "adam", "sgd"])
    parser.add_argument("--batch", type=int, default=100, help="Adam's and SGD's minibatch")
    parser.add_argument("--adam-lr", type=float, default=1e-3)
    parser.add_argument("--sgd-lr", type=float, default=1e-2, help="SGD's learning rate (momentum 0.9)")
    parser.add_argument("--hf-batch", type=int, default=1000, help="Hessian-free's gradient minibatch")
    parser.add_argument("--hf-curvature-batch", type=int, default=200, help="its Gauss-Newton minibatch")
    parser.add_argument("--hf-cg-iterations", type=int, default=30)
    parser.add_argument("--hf-damping", type=float, default=1.0, help="initial lambda")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_images = load(args.data_dir, "train", args.train_images)
    eval_train, eval_test = train_images[:args.eval_images], load(args.data_dir, "test", args.eval_images)
    points = [p for method in args.methods for p in train(method, args, train_images, eval_train, eval_test)]
    OUT.with_suffix(".jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    plot(points, f"{'-'.join(map(str, [784, *args.sizes]))} autoencoder, first {len(train_images)} MNIST training "
                 f"images, {args.seconds:g} s per optimizer, 1 thread")
    for method in args.methods:
        last = [p for p in points if p["method"] == method][-1]
        print(f"{method}: after {last['epoch']} epochs ({last['seconds']:.0f} s) training error "
              f"{last['train_error']:.2f}, test error {last['test_error']:.2f}")


if __name__ == "__main__":
    main()
