"""The grid of a sweep (one model per point) and the history of its training: the
curves of K models shaped like the grid, selected by axis name.
"""
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Grid", "SweepHistory", "history"]


class Grid:
    """The settings of a sweep, one model per point: ``Grid(p=[0.0, 0.5], seed=seeds(3))``.

    Axes are named; models are laid out in row-major order (the last axis
    varies fastest). ``grid["p"]`` is the value of ``p`` for each of the K
    models, ready for ``StackedMLP`` or ``sweep_fit``; a sweep trained with
    ``grid=`` returns curves shaped ``(epochs, *grid.shape)`` and ``h.sel(p=0.5)``.
    """

    def __init__(self, **axes):
        if not axes:
            raise ValueError("a Grid needs at least one axis, e.g. Grid(seed=seeds(3))")
        self.axes = {}
        for name, values in axes.items():
            values = list(values)
            if not values or len(set(map(repr, values))) != len(values):
                raise ValueError(f"grid axis {name!r} needs distinct values, got {values!r}")
            self.axes[name] = values
        self.shape = tuple(len(v) for v in self.axes.values())
        self.k = math.prod(self.shape)

    def __len__(self):
        return self.k

    def __getitem__(self, name):
        if name not in self.axes:
            raise KeyError(f"the grid has axes {list(self.axes)}, not {name!r}")
        i = list(self.axes).index(name)
        index = np.unravel_index(np.arange(self.k), self.shape)[i]
        return [self.axes[name][j] for j in index]

    def point(self, j):
        """Model ``j``'s value on every axis, as a dict."""
        return {name: self[name][j] for name in self.axes}

    def index(self, **where):
        """The flat model indices (0..K-1) at the given axis values: ``grid.index(lr=0.1)``."""
        keep = np.ones(self.k, dtype=bool)
        for name, value in where.items():
            if value not in self.axes.get(name, []):
                raise KeyError(f"{name}={value!r} is not a point of {self!r}")
            keep &= np.array([v == value for v in self[name]])
        return np.flatnonzero(keep).tolist()

    def __repr__(self):
        return "Grid(" + ", ".join(f"{n}={v!r}" for n, v in self.axes.items()) + ")"


CURVES = ("train_loss", "train_acc", "val_loss", "val_acc")


@dataclass
class SweepHistory:
    """Curves of a sweep: each curve has shape ``(epochs, *grid.shape)``.

    The same vocabulary as ``History``: ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc``, ``best_epoch``, ``last``, ``best``.
    ``diverged_at`` is the epoch at which a model's training loss became
    non-finite (-1 if it never did); its curves are NaN from that epoch on.
    ``sel(p=0.5)`` picks one value of a grid axis.
    """

    train_loss: np.ndarray
    train_acc: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    best_epoch: np.ndarray
    seconds: float
    diverged_at: np.ndarray
    grid: Grid | None

    @property
    def diverged(self):
        return self.diverged_at >= 0

    @property
    def last(self):
        """The curves at the last epoch: a dict of arrays shaped like the grid."""
        return {k: getattr(self, k)[-1] for k in CURVES}

    @property
    def best(self):
        """The curves at each model's ``best_epoch``: a dict of arrays shaped like the grid."""
        return {k: np.take_along_axis(getattr(self, k), self.best_epoch[None], 0)[0]
                for k in CURVES}

    def sel(self, **where):
        """The sub-sweep at one value of each named axis: ``h.sel(p=0.5, lr=0.1)``."""
        axes, keep = dict(self.grid.axes), [slice(None)] * len(self.grid.shape)
        for name, value in where.items():
            if name not in axes:
                raise KeyError(f"the grid has axes {list(self.grid.axes)}, not {name!r}")
            if value not in axes[name]:
                raise KeyError(f"{name}={value!r} is not among {axes[name]!r}")
            keep[list(self.grid.axes).index(name)] = axes[name].index(value)
            del axes[name]
        index = tuple(keep)
        curves = {k: getattr(self, k)[(slice(None),) + index] for k in CURVES}
        return SweepHistory(**curves, best_epoch=self.best_epoch[index], seconds=self.seconds,
                            diverged_at=self.diverged_at[index],
                            grid=Grid(**axes) if axes else None)


def history(curves, best_epoch, start, diverged_at, grid):
    """A ``SweepHistory`` from the per-epoch (4, K) curve tensors of ``sweep_fit``."""
    c = torch.stack(curves).cpu().numpy() if curves else np.zeros((0, 4, grid.k), np.float32)
    c = c.reshape(len(c), 4, *grid.shape)
    return SweepHistory(c[:, 0], c[:, 1], c[:, 2], c[:, 3],
                        best_epoch.cpu().numpy().reshape(grid.shape),
                        time.perf_counter() - start, diverged_at.cpu().numpy().reshape(grid.shape),
                        grid)
