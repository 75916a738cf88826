"""labkit's training loops against the machine's own limit: its float32 GEMM peak.

One run measures the peak (square matmuls, and a batched matmul of the
sweep's own shape), then times ``sweep_fit`` (K=16 models at once) and
``fit`` (one model) on the benchmark MLP, and counts their floating-point work
analytically. Only matrix products are counted (bias adds, activations, the
loss and the optimizer are a few flops per weight, well under 1% here); the
count is printed with its formula. ``--profile`` adds torch.profiler's top
operators for the sweep.

It also prints a ceiling for this sweep, an estimate: every operation one sweep
runs (recorded at the dispatcher: matmuls, the loss, ReLUs, the optimizer, copies,
views) replayed alone in a loop on a copy of its arguments (the same shapes,
strides, alignment and shared memory, and the numbers the sweep left in them), and
summed. That is the sweep with warm caches and nothing but its own operations; the
replay calls each from Python, which the sweep does not always do (a view inside a
composite operation), and the cost of such a call is printed beside it. An eager
loop of the same operations can come near the ceiling but not, in practice, beat it.

Last line: ``peak_fraction: X`` = the sweep's GFLOP/s / the measured peak.
"""
import argparse
import collections
import math
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_leaves, tree_map

from labkit.data import mnist1d
from labkit.models import MLP
from labkit.runtime import seed_all
from labkit.sweep import StackedMLP, sweep_fit
from labkit.train import FitConfig, fit

WIDTHS = (40, 128, 128, 10)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def best_seconds(f, repeats, inner=1, dev=torch.device("cpu")):
    f()  # warm-up: allocator, thread pool, first-call dispatch
    times = []
    for _ in range(repeats):
        sync(dev)
        t = time.perf_counter()
        for _ in range(inner):
            f()
        sync(dev)
        times.append((time.perf_counter() - t) / inner)
    return min(times)


def gemm_rates(repeats, dev):
    """Float32 GEMM rates in GFLOP/s on ``dev``: square matmuls, and a batched matmul of
    the sweep's own hidden-layer shape (K=16 of (64 x 128) @ (128 x 128))."""
    rates = {}
    sizes = (512, 1024, 2048) if dev.type == "cpu" else (2048, 4096, 8192)
    for n in sizes:
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        out = torch.empty(n, n, device=dev)
        s = best_seconds(lambda: torch.mm(a, b, out=out), repeats,
                         inner=max(1, sizes[-1] // n), dev=dev)
        rates[f"mm {n}x{n}"] = 2 * n ** 3 / s / 1e9
    k, m, d = 16, 64, 128
    x, w, bias = (torch.randn(k, m, d, device=dev), torch.randn(k, d, d, device=dev),
                  torch.randn(k, 1, d, device=dev))
    s = best_seconds(lambda: torch.baddbmm(bias, x, w), repeats, inner=200, dev=dev)
    rates["baddbmm 16x(64x128 @ 128x128)"] = 2 * k * m * d * d / s / 1e9
    return rates


class _Recorder(TorchDispatchMode):
    """Counts every operation by its overload and its arguments (shapes, strides,
    dtypes, alignment, which arguments share memory), keeping one call of each to
    replay."""

    def __init__(self):
        super().__init__()
        self.count, self.calls = collections.Counter(), {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves, spec = tree_flatten((args, kwargs))
        storages = {}  # which arguments share memory
        key = (func, spec, tuple(_describe(a, storages) for a in leaves))
        self.count[key] += 1
        self.calls.setdefault(key, (func, args, kwargs))
        return func(*args, **kwargs)


def _describe(a, storages):
    if isinstance(a, torch.Tensor):
        where = storages.setdefault(a.untyped_storage().data_ptr(), len(storages))
        return ("tensor", tuple(a.shape), a.stride(), a.dtype, a.device, where,
                a.storage_offset() * a.element_size() % 64)
    return a if isinstance(a, (int, float, bool, str, type(None), torch.dtype,
                               torch.device, torch.layout, torch.memory_format)) else type(a)


def _copy(a, storages):
    """Tensor ``a`` with its whole storage copied (once per storage, so arguments that
    shared memory still do), viewed with the same shape, strides and offset: the same
    numbers (as the sweep left them), in fresh memory. Anything else as it is."""
    if not isinstance(a, torch.Tensor):
        return a
    ptr = a.untyped_storage().data_ptr()
    if ptr not in storages:
        storages[ptr] = a.new_empty(0).set_(a.untyped_storage()).clone()
    return storages[ptr].as_strided(a.shape, a.stride(), a.storage_offset())


def _read_and_written(func, args, kwargs):
    """The tensors ``func`` both reads and writes (``self`` of ``exp_``, the optimizer's
    parameters and state), which a replay must restore; not ``out=`` tensors, which
    it only writes."""
    found = []
    for i, arg in enumerate(func._schema.arguments):
        if arg.alias_info is not None and arg.alias_info.is_write and not arg.is_out:
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            found += [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]
    return found


def _alone(func, args, kwargs, repeats, inner, dev):
    """Seconds for one call of ``func`` alone, best of ``repeats`` loops of ``inner``
    calls. Inputs it reads and writes are restored before each call, and the
    restore's own time is taken off."""
    written = _read_and_written(func, args, kwargs)
    kept = [t.clone() for t in written]

    def restore():
        for t, k in zip(written, kept):
            t.copy_(k)

    def call():
        restore()
        func(*args, **kwargs)
    seconds = best_seconds(call, repeats, inner, dev)
    return max(0.0, seconds - best_seconds(restore, repeats, inner, dev)) if written \
        else seconds


def ceiling(run, dev, repeats=5, inner=10):
    """What ``run()`` would take if each of its operations took what it takes alone:
    every distinct call replayed on a copy of its arguments (``_alone``), times its
    count, summed. Returns a dict: ``alone`` (seconds), ``python`` (the replay's own
    cost of a call from Python, times the count: an empty operation timed the same
    way), ``ops``, ``distinct``, and ``failed``, the operations not replayed, by name."""
    rec = _Recorder()
    with rec:
        run()
    total, failed = 0.0, collections.Counter()
    for key, (func, args, kwargs) in rec.calls.items():
        storages = {}
        try:
            copied = tree_map(lambda a: _copy(a, storages), (args, kwargs))
            total += _alone(func, *copied, repeats, inner, dev) * rec.count[key]
        except (RuntimeError, TypeError, ValueError, IndexError):
            failed[str(func)] += rec.count[key]  # left out of the sum, and named
    n = sum(rec.count.values())
    empty = _alone(torch.ops.aten.alias.default, (torch.zeros((), device=dev),), {},
                   repeats, 100, dev)
    return dict(alone=total, python=empty * n, ops=n, distinct=len(rec.calls),
                failed=failed)


def flops(k, epochs, n_train, n_eval):
    """Matmul flops of ``epochs`` epochs of training on ``n_train`` examples and
    evaluation on ``n_eval`` examples, for K models."""
    layer = [2 * a * b for a, b in zip(WIDTHS, WIDTHS[1:])]  # per example, one layer forward
    forward = sum(layer)
    # backward: a weight gradient for every layer, an input gradient for all but the first
    train = forward + sum(layer) + sum(layer[1:])
    return k * epochs * (n_train * train + n_eval * forward), forward, train


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--profile", action="store_true", help="print the sweep's top operators")
    args = ap.parse_args()
    data = mnist1d(2000, 500, 100)
    dev = data.train.x.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
        f"{torch.get_num_threads()} threads"
    print(f"device: {dev} ({name}), torch {torch.__version__}; float32 "
          f"(TF32 matmuls {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'})")
    n_train, n_val = len(data.train), len(data.val)
    cfg = FitConfig(epochs=args.epochs, batch_size=64, lr=1e-3, optimizer="adamw",
                    weight_decay=1e-4, progress=False)
    total, fwd, trn = flops(args.k, args.epochs, n_train, n_train + n_val)
    print(f"MLP {'-'.join(map(str, WIDTHS))}: forward {fwd} flops/example, "
          f"training step {trn} flops/example (forward + weight grads + input grads "
          "but the first layer's)")
    print(f"work = K x epochs x (n_train x {trn} + (n_train + n_val) x {fwd})")

    def timed(train, build):
        seed_all(0)
        model = build()  # built outside the timed region
        sync(dev)
        t = time.perf_counter()
        train(model)
        sync(dev)
        return time.perf_counter() - t

    mlp = lambda: MLP(WIDTHS[0], list(WIDTHS[1:-1]), WIDTHS[-1]).to(dev)  # noqa: E731
    sweep = lambda: timed(lambda m: sweep_fit(m, data, cfg),  # noqa: E731
                          lambda: StackedMLP([mlp() for _ in range(args.k)]))
    single = lambda: timed(lambda m: fit(m, data, cfg), mlp)  # noqa: E731

    # The machine's speed drifts (other work on the host, clocks): peak, sweep and fit
    # are measured in turn, --repeats times, and the best of each is kept. Each round's
    # own fraction (its sweep against its own peak) shows the spread.
    def sweep_ceiling():  # the sweep's own operations: the model is built outside
        seed_all(0)
        model = StackedMLP([mlp() for _ in range(args.k)])
        return ceiling(lambda: sweep_fit(model, data, cfg), dev)

    sweep(), single()  # warm-up
    c = sweep_ceiling()
    c_alone = [c["alone"]]
    rates, s_sweep, s_fit, rounds = {}, math.inf, math.inf, []
    for _ in range(args.repeats):
        now = gemm_rates(3, dev)
        for name, r in now.items():
            rates[name] = max(r, rates.get(name, 0.0))
        t_sweep = sweep()
        s_sweep, s_fit = min(s_sweep, t_sweep), min(s_fit, single())
        rounds.append(total / t_sweep / 1e9 / max(now.values()))
    c = sweep_ceiling()
    c_alone.append(c["alone"])
    for name, r in rates.items():
        print(f"GEMM {name:32s} {r:7.1f} GFLOP/s")
    peak = max(rates.values())
    print(f"peak (best of the above):              {peak:7.1f} GFLOP/s")
    own = rates["baddbmm 16x(64x128 @ 128x128)"] / peak
    print(f"the sweep's hidden-layer matmul alone reaches {own:.2f} of the peak: a sweep "
          "made only of such products, with nothing else, could not do better")
    g_sweep, g_fit = total / s_sweep / 1e9, total / args.k / s_fit / 1e9
    print(f"sweep_fit K={args.k}: {total / 1e9:.2f} GFLOP in {s_sweep:.3f} s = "
          f"{g_sweep:.1f} GFLOP/s ({g_sweep / peak:.2f} of peak)")
    print(f"fit (one model): {total / args.k / 1e9:.2f} GFLOP in {s_fit:.3f} s = "
          f"{g_fit:.1f} GFLOP/s ({g_fit / peak:.2f} of peak)")
    rounds.sort()
    print(f"per-round fraction (own sweep / own peak), {len(rounds)} rounds: "
          f"min {rounds[0]:.2f}, median {rounds[len(rounds) // 2]:.2f}, "
          f"max {rounds[-1]:.2f}")
    print(f"ceiling (twice: before and after the rounds): the sweep's {c['ops']} "
          f"operations ({c['distinct']} distinct), each replayed alone on a copy of its "
          f"arguments and summed: {c_alone[0]:.3f} and {c_alone[1]:.3f} s, of which "
          f"{c['python']:.3f} s is the replay's own cost of calling from Python")
    left = ", ".join(f"{n} x {name}" for name, n in c["failed"].items()) or "none"
    print(f"not replayed (left out of the sum): {left}")
    best = min(c_alone)
    g_alone = total / best / 1e9
    print(f"ceiling: {best:.3f} s = {g_alone:.1f} GFLOP/s ({g_alone / peak:.2f} of peak); "
          f"the sweep ran at {best / s_sweep:.2f} of it")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            sweep()
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=28,
            max_shapes_column_width=60))
    print(f"peak_fraction: {g_sweep / peak:.3f}")


if __name__ == "__main__":
    main()
