"""Plots the labs share: learning curves and mean ± std bands."""
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["learning_curves", "band", "new_figure"]


def new_figure(ncols=1, width=4.5, height=3.2):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False,
                             layout="constrained")
    return fig, axes[0]


def learning_curves(histories, metric="loss", ax=None, title=None):
    """Train (dashed) and validation (solid) ``metric`` per epoch for each named History."""
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric must be 'loss' or 'acc', got {metric!r}")
    if ax is None:
        _, (ax,) = new_figure()
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        ax.plot(h.epoch, getattr(h, f"train_{metric}"), "--", color=color, label=f"{name} train")
        ax.plot(h.epoch, getattr(h, f"val_{metric}"), "-", color=color, label=f"{name} val")
        if h.best_epoch is not None and metric == "loss":
            ax.plot([h.best_epoch], [h.val_loss[h.epoch.index(h.best_epoch)]], "o", color=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel({"loss": "loss", "acc": "accuracy"}[metric])
    if metric == "loss":
        ax.set_yscale("log")
    ax.set_title(title or f"learning curves ({metric})")
    ax.legend(fontsize="small")
    return ax


def band(ax, x, runs, label, color=None, marker="o"):
    """Mean line with a ± one standard deviation band; ``runs`` has shape (seeds, len(x))."""
    runs = np.asarray(runs, dtype=float)
    mean, std = runs.mean(0), runs.std(0)
    line, = ax.plot(x, mean, marker=marker, label=label, color=color)
    ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    return line
