"""Forward+backward of K=16 MLPs 40-128-128-10 (batch 64): torch.func vmap vs StackedMLP.

Why labkit.sweep keeps its batched-matmul path: it prints the time per step of
each, for plain, batch-norm and dropout MLPs, and last ``ratio: X``, the
slowest vmap case's time over StackedMLP's (above 1: StackedMLP is faster).
"""
import copy
import time

import torch
from torch.func import functional_call, stack_module_state, vmap
from labkit.models import MLP
from labkit.sweep import StackedMLP
torch.manual_seed(0)
K, B = 16, 64
ratios = []
for bn, p in [(False, 0.0), (True, 0.0), (False, 0.5)]:
    models = [MLP(40, [128, 128], 10, batchnorm=bn, dropout=p) for _ in range(K)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    def f(pr, bu, x):
        return functional_call(base, (pr, bu), (x,))
    x = torch.randn(B, 40); y = torch.randint(0, 10, (B,))
    vf = vmap(f, in_dims=(0, 0, None), randomness="different")
    ok = "ok"
    try:
        out = vf(params, buffers, x)
    except Exception as e:
        ok = f"fails: {type(e).__name__}: {str(e)[:120]}"
    stacked = StackedMLP([m for m in models], dropout=p)
    def t(fn, n=100):
        s = time.perf_counter()
        for _ in range(n): fn()
        return (time.perf_counter() - s) / n * 1e6
    def step_stacked():
        out = stacked(x)
        torch.nn.functional.cross_entropy(out.reshape(-1, 10), y.repeat(K)).backward()
    def step_vmap():
        out = vf(params, buffers, x)
        torch.nn.functional.cross_entropy(out.reshape(-1, 10), y.repeat(K)).backward()
    for v in params.values(): v.requires_grad_(True)
    for _ in range(10):  # warm-up
        step_stacked()
        if ok == "ok":
            step_vmap()
    ts, tv = float("inf"), float("nan") if ok != "ok" else float("inf")
    for _ in range(5):  # interleaved, best of 5 for each
        ts = min(ts, t(step_stacked))
        if ok == "ok":
            tv = min(tv, t(step_vmap))
    print(f"batchnorm={bn} dropout={p}: vmap {ok}; StackedMLP {ts:.0f} us/step, vmap {tv:.0f} us/step")
    ratios.append(tv / ts)
print(f"ratio: {max(ratios):.2f}")
