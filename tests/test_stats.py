"""labkit.stats.effect: the numbers every lab's claims rest on."""
import math

import numpy as np
import pytest

from labkit.stats import effect, mean_std, paired_bootstrap


def test_paired_effect_is_the_mean_difference_over_its_standard_error():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.0, 2.0, 3.5])
    d = a - b
    e = effect(a, b)
    assert e.n == 4 and e.mean == pytest.approx(d.mean())
    assert e.se == pytest.approx(d.std(ddof=1) / 2) and e.z == pytest.approx(e.mean / e.se)


def test_pairing_removes_what_the_runs_share():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 10, 50)                  # e.g. one seed's initialisation
    a, b = shared + 1.0 + rng.normal(0, 0.1, 50), shared + rng.normal(0, 0.1, 50)
    assert effect(a, b).z > 30 > effect(a, b, paired=False).z


def test_thresholds_on_either_side():
    runs = np.array([0.02, 0.03, 0.025])
    assert effect(0.09, runs).z > 3 and effect(runs, 0.09).z < -3
    assert effect(runs, 0.025).mean == pytest.approx(0.0)


def test_degenerate_cases():
    assert effect([1.0, 1.0], [0.0, 0.0]).z == math.inf       # no spread, positive effect
    assert math.isnan(effect([1.0, 1.0], [1.0, 1.0]).z)         # no effect at all: never > 3
    assert effect([1.0], 0.0).se == math.inf                    # one run proves nothing
    with pytest.raises(ValueError, match="NaN"):
        effect([1.0, math.nan], 0.0)
    with pytest.raises(ValueError, match="equal counts"):
        effect([1.0, 2.0, 3.0], [1.0, 2.0])


def test_mean_std_prints_the_sample_deviation():
    assert mean_std([1.0, 3.0]) == f"2.000 ± {math.sqrt(2):.3f}"


def test_glue_numbers_takes_only_single_numbers():
    from labkit.book import glue_numbers

    with pytest.raises(ValueError, match="one number"):
        glue_numbers(curve=np.arange(3))


def test_power_of_ten_writes_prose_numbers():
    from labkit.book import glue_text, power_of_ten

    assert power_of_ten(3.04e-8) == "3.0 × 10⁻⁸"
    assert power_of_ten(1.44e-6, digits=3) == "1.44 × 10⁻⁶"
    assert power_of_ten(2.5e12) == "2.5 × 10¹²"
    assert power_of_ten(0.0) == "0"
    with pytest.raises(ValueError, match="string"):
        glue_text(gap=1e-8)


def test_paired_bootstrap_matches_the_standard_error_of_the_mean_difference():
    rng = np.random.default_rng(1)
    n = 2000
    a = rng.random((3, n)) < 0.8                  # 3 runs' right/wrong on n examples
    b = rng.random((3, n)) < 0.7
    d = a.mean(0) - b.mean(0)                     # averaged over runs, per example
    boot = paired_bootstrap(a, b, resamples=4000)
    assert boot.mean == pytest.approx(a.mean() - b.mean()) and boot.n == n
    assert boot.se == pytest.approx(d.std() / math.sqrt(n), rel=0.1)
    assert boot.lo < boot.mean < boot.hi and boot.lo > 0 and boot.z > 3
    assert paired_bootstrap(a, b, resamples=4000) == boot          # check: seeded
    alone = paired_bootstrap(a[0])                                 # one accuracy
    assert alone.mean == pytest.approx(a[0].mean()) and alone.lo < a[0].mean() < alone.hi


def test_paired_bootstrap_pairs_the_examples():
    rng = np.random.default_rng(2)
    a = rng.random(1000) < 0.75
    b = a.copy()
    b[:30] = ~b[:30]                              # b differs from a on 30 examples only
    paired = paired_bootstrap(a, b)
    unpaired = math.sqrt(a.var() / 1000 + b.var() / 1000)
    assert paired.se < unpaired / 3               # shared examples cancel
    with pytest.raises(ValueError, match="same"):
        paired_bootstrap(a, b[:500])
