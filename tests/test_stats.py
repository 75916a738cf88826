"""labkit.stats.effect: the numbers every lab's claims rest on."""
import math

import numpy as np
import pytest

from labkit.stats import effect, mean_std


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
