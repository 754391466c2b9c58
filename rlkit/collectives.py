"""Ring all-reduce written out with point-to-point messages: the algorithm behind NCCL's and gloo's all-reduce for
large tensors, in a form to read (``--allreduce ring`` trains with it; the builtin one is faster).

The N processes stand in a ring: rank r sends to its right neighbour r + 1 and receives from its left one r - 1
(mod N). The flat tensor is cut into N chunks, of sizes differing by at most one element (some are empty when
it has fewer than N elements).

1. Reduce-scatter, N - 1 steps. At step s rank r sends chunk (r - s) mod N, the partial sum it holds, and receives
   chunk (r - s - 1) mod N, which it adds to its own. A chunk travels once around the ring collecting one
   addend per hop, so after N - 1 steps rank r holds the full sum of chunk (r + 1) mod N.
2. All-gather, N - 1 steps. At step s rank r sends chunk (r + 1 - s) mod N and overwrites chunk (r - s) mod N with
   what it receives: each finished chunk travels around the ring once more.

Cost, in the alpha-beta model (a message of b bytes takes alpha + b * beta) for D bytes of data: each of the
2(N - 1) steps moves one chunk of D / N bytes over every link at once, so each process sends, and receives,
2(N - 1) / N * D bytes in all:

    T_ring = 2(N - 1) * alpha + 2(N - 1) / N * D * beta

The bandwidth term is independent of N but for the factor (N - 1) / N, below 2 D * beta however many processes
join: adding processes does not make each one move more data.
Reducing to one root and broadcasting back (the naive way) makes the root receive (N - 1) * D bytes and send
(N - 1) * D: its bandwidth term, (N - 1) * D * beta each way, grows linearly with N. The ring pays in latency
instead, the 2(N - 1) * alpha of its 2(N - 1) sequential steps, which is why libraries switch to trees for small
tensors. Benchmarks report the bus bandwidth, 2(N - 1) / N * D / time: the rate each link carried, comparable
across N.

Every sum is computed once, by the rank that finishes its chunk, and copied to the others, so every process ends
with bitwise the same result (which data-parallel training relies on to keep its replicas equal). The order of the
additions differs from the builtin all-reduce's, so the two agree to rounding, not bit for bit.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def chunk_bounds(numel: int, n: int) -> list[tuple[int, int]]:
    """[start, end) of each of ``n`` chunks of ``numel`` elements: the first ``numel % n`` one element longer."""
    base, extra = divmod(numel, n)
    bounds, start = [], 0
    for i in range(n):
        end = start + base + (i < extra)
        bounds.append((start, end))
        start = end
    return bounds


def ring_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over every process of the default group, in place, by ring reduce-scatter then all-gather on
    ``isend``/``irecv`` only; returns it. A no-op for one process (or outside a process group). Any shape, any
    dtype the backend can send (float32, float64, bfloat16...); every process must pass the same shape and dtype.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    n, rank = dist.get_world_size(), dist.get_rank()
    right, left = (rank + 1) % n, (rank - 1) % n
    contiguous = tensor.is_contiguous()
    flat = tensor.view(-1) if contiguous else tensor.contiguous().view(-1)  # a view of the tensor when it can be
    chunks = [flat[start:end] for start, end in chunk_bounds(flat.numel(), n)]
    received = torch.empty_like(chunks[0])  # the largest chunk is the first

    for step in range(n - 1):  # reduce-scatter
        send, recv = chunks[(rank - step) % n], chunks[(rank - step - 1) % n]
        buffer = received[:recv.numel()]
        _exchange(send, buffer, right, left)
        recv.add_(buffer)
    for step in range(n - 1):  # all-gather: received straight into place
        _exchange(chunks[(rank + 1 - step) % n], chunks[(rank - step) % n], right, left)

    if not contiguous:
        tensor.copy_(flat.view(tensor.shape))  # the work was done on a copy
    return tensor


def _exchange(send: torch.Tensor, recv: torch.Tensor, right: int, left: int) -> None:
    """Send ``send`` to ``right`` while receiving ``recv`` from ``left``; both posted before either is waited on,
    or every rank would block in its send with nobody receiving. Empty chunks (fewer elements than processes) are
    skipped on both ends: their sizes are the same on every rank."""
    ops = []
    if send.numel():
        ops.append(dist.P2POp(dist.isend, send, right))
    if recv.numel():
        ops.append(dist.P2POp(dist.irecv, recv, left))
    if ops:
        for request in dist.batch_isend_irecv(ops):
            request.wait()
