"""Which video nets see motion: the moving-direction set, where a single frame carries no label.

    python benchmarks/video_direction.py                                    # the default sizes (minutes on a CPU)
    python benchmarks/video_direction.py --videos-per-class 6 --epochs 1    # a smoke run (seconds)

Generates a tiny UCF-101 with ``make_tiny_ucf(..., motion="direction")`` (a textured blob on a torus moving in one
of ``--classes`` directions), computes its optical flow once (``extract_flow``, as ``python -m rlkit.data
extract-flow`` does), trains R3D-18 (small width), the CNN + LSTM, the single-frame ResNet-18 (the spatial stream)
and the flow ResNet-18 (the temporal stream, on stacks of ``--flow-stack`` flow fields) on it through ``train.py``
with flips off (a mirror swaps left and right), evaluates each through ``evaluate.py``, fuses the two streams
(``evaluate.py SPATIAL --fuse TEMPORAL``) and prints one markdown row per model. A net that sees motion beats
chance (1 / classes); the frame net cannot.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import evaluate  # noqa: E402
import train  # noqa: E402
from rlkit.data import make_tiny_ucf  # noqa: E402
from rlkit.data.flow import extract_flow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=4, help="directions (default: 4)")
    parser.add_argument("--videos-per-class", type=int, default=24, help="videos per direction (default: 24)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default: 16)")
    parser.add_argument("--size", type=int, default=32, help="frame side in pixels, even (default: 32)")
    parser.add_argument("--clip-length", type=int, default=8, help="frames per clip (default: 8)")
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training videos (default: 20)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips or frames per update (default: 8)")
    parser.add_argument("--width", type=float, default=0.25, help="channel multiplier of r3d18 and cnn-lstm "
                                                                 "(default: 0.25)")
    parser.add_argument("--flow-stack", type=int, default=7, help="flow fields per stack of the flow net (default: "
                                                                     "7, the motion within one 8-frame clip)")
    parser.add_argument("--nets", nargs="+", default=["r3d18", "cnn-lstm", "frame-resnet18", "flow-resnet18"],
                        help="which nets (default: r3d18 cnn-lstm frame-resnet18 flow-resnet18); with both "
                             "frame-resnet18 and flow-resnet18 their fusion is a row too")
    parser.add_argument("--fuse-weight", type=float, default=0.5, help="weight of the spatial stream in the fusion "
                                                                       "(default: 0.5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    parser.add_argument("--out", type=Path, help="keep the data and runs here (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="video_direction_"))
    data = out / "data"
    if not (data / "ucfTrainTestlist").is_dir():
        make_tiny_ucf(data, args.classes, args.videos_per_class, args.frames, args.size, seed=0, motion="direction")
    common = ["--task", "ucf101", "--data-dir", str(data), "--no-flip", "--input-size", str(args.size),
              "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--clip-length",
              str(args.clip_length), "--test-clips", "4", "--test-frames", str(args.frames), "--seed", str(args.seed),
              "--no-progress"]
    flow = out / "flow"
    if "flow-resnet18" in args.nets and not (flow / "flow.json").is_file():
        start = time.perf_counter()
        extract_flow(data, flow)
        print(f"optical flow of every video in {time.perf_counter() - start:.0f} s")
    own = {"r3d18": ["--width", str(args.width)], "cnn-lstm": ["--width", str(args.width), "--lstm-grid", "2"],
           "frame-resnet18": [], "flow-resnet18": ["--flow-dir", str(flow), "--flow-stack", str(args.flow_stack)]}
    rows, runs, walls = [], {}, {}
    for net in args.nets:
        run = out / f"{net}__{int(time.time())}"
        argv = ["--net", net, *common, *own.get(net, []), "--run-dir", str(run)]
        start = time.perf_counter()
        train.main(argv)
        wall = time.perf_counter() - start
        with contextlib.redirect_stdout(io.StringIO()):  # the report's JSON line
            result = evaluate.main([str(run), "--json"])
        rows.append(f"| {net} | {100 * result['accuracy']['top1']:.1f}% | {wall:.0f} s | "
                    f"`python train.py {shlex.join(argv[:-2])}` |")
        runs[net], walls[net] = run, wall
        print(rows[-1], flush=True)  # each row as it is measured: a stopped benchmark keeps its finished rows
    if "frame-resnet18" in runs and "flow-resnet18" in runs:
        fuse = ["--fuse", str(runs["flow-resnet18"]), "--fuse-weight", str(args.fuse_weight)]
        with contextlib.redirect_stdout(io.StringIO()):
            result = evaluate.main([str(runs["frame-resnet18"]), *fuse, "--json"])
        rows.append(f"| two-stream: frame-resnet18 + flow-resnet18 | {100 * result['accuracy']['top1']:.1f}% | "
                    f"{walls['frame-resnet18'] + walls['flow-resnet18']:.0f} s (both) | "
                    f"`python evaluate.py FRAME_RUN --fuse FLOW_RUN --fuse-weight {args.fuse_weight}` |")
    print(f"\nmoving-direction set: {args.classes} classes (chance {100 / args.classes:.1f}%), "
          f"{args.videos_per_class} videos per class of {args.frames} frames at {args.size}x{args.size}; "
          f"{platform.processor() or platform.machine()}, {args.threads} threads\n")
    print("| net | test top-1 per video | wall time | command |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
