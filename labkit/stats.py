"""Effects over a population of runs: a mean difference and its standard error.

A lab's assert states its claim about the population of seeds, with a margin
tied to the spread it measured: ``assert effect(a, b).z > 3``, i.e. ``a`` is
above ``b`` on average by more than three standard errors.
"""
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Effect", "effect", "mean_std"]


@dataclass(frozen=True)
class Effect:
    """The mean of ``a - b`` over ``n`` runs, its standard error and ``z = mean / se``."""

    mean: float
    se: float
    n: int

    @property
    def z(self):
        if self.se > 0:
            return self.mean / self.se
        return math.copysign(math.inf, self.mean) if self.mean != 0 else math.nan

    def __str__(self):
        return f"mean difference {self.mean:.4g} ± {self.se:.2g} (s.e., n={self.n}), z={self.z:.1f}"


def effect(a, b=0.0, paired=True):
    """How far ``a`` lies above ``b``, over runs.

    ``a`` and ``b`` are arrays of per-run values (or one of them a number). With
    ``paired=True`` and arrays of one shape, run i of ``a`` is compared with run i
    of ``b`` (same seed, same data): the standard error is that of the differences.
    With ``paired=False`` the two groups are independent (Welch's standard error).
    NaN runs (e.g. diverged models) are an error: decide what they mean first.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim == 0:                      # a threshold above runs: compare it with each run
        a = np.full(b.shape, float(a))
    a = a.ravel()
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("effect: NaN values; replace diverged runs by what they mean first")
    if b.ndim == 0 or (paired and b.size == a.size):
        d = a - b.ravel() if b.ndim else a - float(b)
        se = d.std(ddof=1) / math.sqrt(d.size) if d.size > 1 else math.inf
        return Effect(float(d.mean()), float(se), d.size)
    if paired:
        raise ValueError(f"paired runs need equal counts, got {a.size} and {b.size}")
    b = b.ravel()
    se = math.sqrt(sum(x.var(ddof=1) / x.size for x in (a, b)))
    return Effect(float(a.mean() - b.mean()), se, min(a.size, b.size))


def mean_std(x, digits=3):
    """``"0.123 ± 0.004"``: the mean and sample standard deviation of runs, for printing."""
    x = np.asarray(x, dtype=float)
    return f"{x.mean():.{digits}f} ± {x.std(ddof=1) if x.size > 1 else 0:.{digits}f}"
