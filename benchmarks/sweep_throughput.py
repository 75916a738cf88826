"""K=16 models trained at once with labkit.sweep against 16 sequential labkit fits.

Same MLP shape, same data, same epochs, sixteen weight-decay values.
Last line: ``ratio: X`` = sequential seconds / sweep seconds (higher is better).
"""
import argparse
import time

import torch

from labkit.data import mnist1d
from labkit.models import MLP
from labkit.sweep import StackedMLP, sweep_fit
from labkit.train import FitConfig, fit


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    data = mnist1d(2000, 500, 100)
    decays = torch.logspace(-5, -1, args.k).tolist()
    cfg = FitConfig(epochs=args.epochs, batch_size=64, lr=1e-3, optimizer="adamw", progress=False)

    def models():
        out = []
        for s in range(args.k):
            torch.manual_seed(s)
            out.append(MLP(40, [128, 128], 10).to(data.train.x.device))
        return out

    seq_s, sweep_s = [], []
    for _ in range(args.repeats):
        ms = models()
        t = time.perf_counter()
        for m, wd in zip(ms, decays):
            fit(m, data, FitConfig(**{**cfg.__dict__, "weight_decay": wd}))
        seq_s.append(time.perf_counter() - t)
        stacked = StackedMLP(models())
        t = time.perf_counter()
        sweep_fit(stacked, data, cfg, weight_decay=decays)
        sweep_s.append(time.perf_counter() - t)
    print(f"device: {data.train.x.device}, threads: {torch.get_num_threads()}, K={args.k}")
    print(f"{args.k} sequential fits: {min(seq_s):.3f} s (best of {args.repeats})")
    print(f"one sweep of {args.k}:    {min(sweep_s):.3f} s (best of {args.repeats})")
    print(f"ratio: {min(seq_s) / min(sweep_s):.2f}")


if __name__ == "__main__":
    main()
