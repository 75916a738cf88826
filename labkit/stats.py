"""Effects over a population of runs: a mean difference and its standard error.

A lab's assert states its claim about the population of seeds, with a margin
tied to the spread it measured: ``assert effect(a, b).z > 3``, i.e. ``a`` is
above ``b`` on average by more than three standard errors.
"""
import math
from dataclasses import dataclass

import numpy as np

from .runtime import seed as actual_seed

__all__ = ["Effect", "effect", "mean_std", "Bootstrap", "paired_bootstrap"]


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


@dataclass(frozen=True)
class Bootstrap:
    """A test-set accuracy (or difference of two) and its bootstrap interval over the
    test examples: ``lo`` and ``hi`` bound the central ``level`` of the resampled
    values, ``se`` is their standard deviation and ``z = mean / se``."""

    mean: float
    se: float
    lo: float
    hi: float
    level: float
    n: int

    @property
    def z(self):
        return Effect(self.mean, self.se, self.n).z

    def __str__(self):
        return (f"{self.mean:+.4f}, {100 * self.level:.0f}% interval over the {self.n} test "
                f"examples [{self.lo:+.4f}, {self.hi:+.4f}], z={self.z:.1f}")


def paired_bootstrap(correct_a, correct_b=None, resamples=4000, level=0.95, seed=0):
    """How far model ``a``'s test accuracy lies above ``b``'s, with the uncertainty
    that comes from the test set itself (the seeds of ``effect`` share one test set).

    ``correct_a`` and ``correct_b`` say which test examples each run got right: shape
    ``(N,)`` for one run, or ``(runs, N)``, averaged over runs first. Both are scored
    on the same N examples, so the resamples pick the same examples for both
    (paired); ``correct_b=None`` gives ``a``'s accuracy itself. ``seed`` is a local
    seed (``LABKIT_SEED`` shifts it).
    """
    a = np.asarray(correct_a, dtype=float)
    a = a.reshape(-1, a.shape[-1]).mean(0)
    d = a
    if correct_b is not None:
        b = np.asarray(correct_b, dtype=float)
        b = b.reshape(-1, b.shape[-1]).mean(0)
        if b.shape != a.shape:
            raise ValueError(f"paired_bootstrap: the runs were scored on {a.size} and "
                             f"{b.size} test examples; pairing needs the same ones")
        d = a - b
    if d.size < 2 or np.isnan(d).any() or not 0 < level < 1:
        raise ValueError("paired_bootstrap needs >= 2 test examples, no NaN, 0 < level < 1")
    rng = np.random.default_rng(actual_seed(seed))
    means = np.empty(resamples)
    for i in range(0, resamples, 500):  # 500 resamples at a time: bounded memory
        idx = rng.integers(0, d.size, size=(min(500, resamples - i), d.size))
        means[i:i + len(idx)] = d[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Bootstrap(float(d.mean()), float(means.std(ddof=1)), float(lo), float(hi),
                     level, d.size)
