"""Plots the labs share: the figure style, learning curves and mean ± std bands.

Importing this module sets the course's figure style (``STYLE``) and, in a
Jupyter kernel, shows figures as SVG. An SVG is sharp on any screen, and a
browser gives it its design size at 96 CSS px per inch; a figure at most
``COLUMN_WIDTH`` inches wide therefore shows on the site at full size, not
shrunk into the content column (672 CSS px at 1280 px wide).
"""
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["COLUMN_WIDTH", "STYLE", "learning_curves", "band", "new_figure"]

# Inches. The site's content column is 672 CSS px = 7 in; IPython saves figures with a
# tight bounding box that may add up to about 0.1 in, hence the margin.
COLUMN_WIDTH = 6.8

STYLE = {
    "font.size": 11,  # axis labels; at design size 11 pt is 14.7 CSS px
    "xtick.labelsize": "small",
    "ytick.labelsize": "small",
    "legend.fontsize": "small",  # a legend is never smaller than the tick labels
    "legend.title_fontsize": "small",
    "svg.fonttype": "path",  # text as outlines: the same glyphs without the fonts
    "svg.hashsalt": "labkit",  # stable element ids: the same figure gives the same file
}
plt.rcParams.update(STYLE)


def _inline_svg():
    """In IPython, show figures as SVG (without a date, so reruns give identical files)."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("svg", metadata={"Date": None})


_inline_svg()


def new_figure(ncols=1, width=4.5, height=3.2, nrows=1):
    """A figure of ``nrows`` x ``ncols`` panels, each ``width`` x ``height`` inches.

    Returns ``(fig, axes)`` with the axes flat, row by row. The figure must fit the
    site's content column: ``ncols * width <= COLUMN_WIDTH``.
    """
    if ncols * width > COLUMN_WIDTH + 1e-9:
        raise ValueError(f"{ncols} panels of {width} in are {ncols * width:.1f} in wide; "
                         f"the content column holds {COLUMN_WIDTH} in (use nrows or a "
                         "smaller width)")
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False, layout="constrained")
    return fig, axes.ravel()


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
