"""labkit's fit against the textbook DataLoader(TensorDataset) loop, same MLP, same run.

Both train the same MLP for the same epochs on the same MNIST-1D tensors with
Adam and evaluate once per epoch. The DataLoader loop is the usual pattern:
per-sample indexing and collation, and ``loss.item()`` every step.
The number of epochs is calibrated so that labkit's side runs for at least
``--seconds`` (2 s by default; a shorter run is mostly noise), and the two
sides are timed in turn, ``--repeats`` times each, best of each kept.
Last line: ``ratio: X`` = DataLoader seconds / labkit seconds (higher is better).
"""
import argparse
import math
import time

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from labkit.data import mnist1d
from labkit.models import MLP
from labkit.runtime import seed_all
from labkit.train import FitConfig, evaluate, fit


def dataloader_loop(model, data, epochs, batch_size, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=batch_size,
                        shuffle=True)
    for _ in range(epochs):
        model.train()
        total = 0.0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        evaluate(model, data.train)[0].item()
        evaluate(model, data.val)[0].item()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="the least time labkit's side runs (sets the number of epochs)")
    ap.add_argument("--epochs", type=int, default=None, help="fixed epochs instead")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data = mnist1d(4000, 1000, 100)
    cfg = FitConfig(epochs=5, batch_size=args.batch_size, lr=1e-3, progress=False)
    if args.epochs is None:  # calibrate: enough epochs for labkit's side to last --seconds
        fit(MLP(40, [128, 128], 10).to(data.train.x.device), data, cfg)
        per_epoch = min(fit(MLP(40, [128, 128], 10).to(data.train.x.device), data,
                            cfg).seconds for _ in range(3)) / cfg.epochs
        args.epochs = max(1, math.ceil(1.1 * args.seconds / per_epoch))
    cfg = FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, progress=False)
    labkit_s, loader_s = [], []
    for r in range(args.repeats):  # interleaved, best of N for each
        seed_all(r)
        model = MLP(40, [128, 128], 10).to(data.train.x.device)
        t = time.perf_counter()
        fit(model, data, cfg)
        labkit_s.append(time.perf_counter() - t)
        seed_all(r)
        model = MLP(40, [128, 128], 10).to(data.train.x.device)
        t = time.perf_counter()
        dataloader_loop(model, data, args.epochs, args.batch_size, 1e-3)
        loader_s.append(time.perf_counter() - t)
    print(f"device: {data.train.x.device}, threads: {torch.get_num_threads()}, "
          f"epochs: {args.epochs}")
    print(f"labkit fit:            {min(labkit_s):.3f} s (best of {args.repeats})")
    print(f"DataLoader loop:       {min(loader_s):.3f} s (best of {args.repeats})")
    print(f"ratio: {min(loader_s) / min(labkit_s):.2f}")


if __name__ == "__main__":
    main()
