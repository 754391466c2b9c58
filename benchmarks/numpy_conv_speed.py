"""NumPy Conv2D (im2col, rlkit.supervised.numpy_nn) against torch's conv2d: forward + backward images/s.

    python benchmarks/numpy_conv_speed.py --batch 100 --channels 32 --kernel 7 --repeats 50 --threads 1

Times one forward and one backward pass of a single conv layer (assignment 2's: 1 input channel, 28x28 images,
stride 1, no padding) on the same random float32 batch for both, and prints a markdown table header and row:
median milliseconds per batch, images/s, and numpy/torch speed ratio (above 1: NumPy is faster). The backward
computes weight, bias and input grads; ``--no-input-grad`` drops the input grad on both sides, as when the conv
is the first layer of a network (what training does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100, help="images per batch")
    parser.add_argument("--channels", type=int, default=32, help="conv output channels (filters)")
    parser.add_argument("--kernel", type=int, default=7, help="square kernel size")
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=50, help="timed forward+backward passes per library")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch intra-op threads")
    parser.add_argument("--no-input-grad", action="store_true", help="skip the input grad on both sides")
    return parser.parse_args()


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after two warm-up calls (median: this VM is noisy)."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    # OpenBLAS reads its thread count when NumPy loads, so set it before the first numpy import.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    from rlkit.supervised.numpy_nn import Conv2D

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch, args.in_channels, args.image_size, args.image_size), np.float32)
    input_grad = not args.no_input_grad

    conv = Conv2D(args.in_channels, args.channels, args.kernel, rng)
    grad_y = np.ones_like(conv.forward(images))

    def numpy_step() -> None:
        conv.forward(images)
        conv.backward(grad_y, need_input_grad=input_grad)

    x_t = torch.from_numpy(images).requires_grad_(input_grad)
    w_t = torch.from_numpy(conv.params["weight"].copy()).requires_grad_()
    b_t = torch.from_numpy(conv.params["bias"].copy()).requires_grad_()
    grad_y_t = torch.from_numpy(grad_y)

    def torch_step() -> None:
        x_t.grad = w_t.grad = b_t.grad = None
        torch.nn.functional.conv2d(x_t, w_t, b_t).backward(grad_y_t)

    numpy_s = median_seconds(numpy_step, args.repeats)
    torch_s = median_seconds(torch_step, args.repeats)
    shape = (f"batch {args.batch}, {args.in_channels}x{args.image_size}x{args.image_size} -> "
             f"{args.channels} filters {args.kernel}x{args.kernel}" + ("" if input_grad else ", no input grad"))
    print("| conv fwd+bwd | threads | NumPy ms/batch | NumPy images/s | torch ms/batch | torch images/s "
          "| NumPy/torch speed |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {shape} | {args.threads} | {numpy_s * 1e3:.2f} | {args.batch / numpy_s:,.0f} | {torch_s * 1e3:.2f} | "
          f"{args.batch / torch_s:,.0f} | {torch_s / numpy_s:.2f}x |")


if __name__ == "__main__":
    main()
