"""K=16 small 1-D CNNs trained at once (labkit.vmapped.StackedModel + sweep_fit) against
16 sequential labkit fits.

Same CNN shape (MNIST-1D signals, 1 channel of 40 samples; conv widths 16-32,
kernel 5, batch norm), same data, same epochs and batch size, sixteen
weight-decay values. The stacked sweep runs on StackedModel's folded path (the
default for a CNN) and, unless ``--no-vmap``, on its vmap path (``fold=False``).
The runs alternate, best of ``--repeats`` for each. Last line: ``ratio: X`` =
sequential seconds / folded stacked seconds (above 1: the stacked sweep is faster).
"""
import argparse
import time

import torch

from labkit.data import mnist1d
from labkit.models import CNN
from labkit.runtime import seed_all
from labkit.sweep import sweep_fit
from labkit.train import FitConfig, fit
from labkit.vmapped import StackedModel


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--no-batchnorm", action="store_true")
    ap.add_argument("--no-vmap", action="store_true", help="skip the vmap path")
    args = ap.parse_args()
    data = mnist1d(args.n_train, 500, 100)
    decays = torch.logspace(-5, -1, args.k).tolist()
    cfg = FitConfig(epochs=args.epochs, batch_size=64, lr=1e-3, optimizer="adamw", progress=False)

    def build():
        return CNN(1, 10, (16, 32), batchnorm=not args.no_batchnorm, dims=1, kernel=5)

    def models():
        out = []
        for s in range(args.k):
            seed_all(s)
            out.append(build().to(data.train.x.device))
        return out

    def sequential():
        ms = models()
        t = time.perf_counter()
        for m, wd in zip(ms, decays):
            fit(m, data, FitConfig(**{**cfg.__dict__, "weight_decay": wd}))
        return time.perf_counter() - t

    def stacked(fold):
        model = StackedModel(models(), fold=fold)
        t = time.perf_counter()
        sweep_fit(model, data, cfg, weight_decay=decays)
        return time.perf_counter() - t

    seq_s, stack_s, vmap_s = [], [], []
    for _ in range(args.repeats):  # interleaved: all see the same drift of a shared machine
        seq_s.append(sequential())
        stack_s.append(stacked(True))
        if not args.no_vmap:
            vmap_s.append(stacked(False))
    print(f"device: {data.train.x.device}, threads: {torch.get_num_threads()}, K={args.k}, "
          f"CNN 1-16-32 kernel 5, batchnorm={not args.no_batchnorm}, "
          f"{args.n_train} examples x {args.epochs} epochs, batch 64")
    print(f"{args.k} sequential fits: {min(seq_s):.3f} s (best of {args.repeats})")
    print(f"one stacked sweep of {args.k} (folded): {min(stack_s):.3f} s "
          f"(best of {args.repeats})")
    if vmap_s:
        print(f"one stacked sweep of {args.k} (vmap):   {min(vmap_s):.3f} s "
              f"(best of {args.repeats}; {min(seq_s) / min(vmap_s):.2f}x sequential)")
    print(f"ratio: {min(seq_s) / min(stack_s):.2f}")


if __name__ == "__main__":
    main()
