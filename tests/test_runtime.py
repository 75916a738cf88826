import platform
import random

import numpy as np
import pytest
import torch

from labkit.runtime import device, pick, profile, seed_all


@pytest.mark.parametrize("value,expected", [("ci", "ci"), ("CI", "ci"), ("full", "full"),
                                            ("", "default"), (None, "default")])
def test_profile_reads_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("LABKIT_PROFILE", raising=False)
    else:
        monkeypatch.setenv("LABKIT_PROFILE", value)
    assert profile() == expected


def test_pick_follows_profile(monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "ci")
    assert pick(1, 2, 3) == 1
    monkeypatch.setenv("LABKIT_PROFILE", "full")
    assert pick(1, 2, 3) == 3
    assert pick(1, 2) == 2  # full falls back to default


def test_device_prefers_env_and_falls_back_to_cpu(monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    assert device() == torch.device("cpu")
    monkeypatch.delenv("LABKIT_DEVICE")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert device() == torch.device("cpu")
    else:
        assert device().type in ("cuda", "mps")


def test_seed_all_makes_every_generator_repeat():
    seed_all(3)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_all(3)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b


def test_seed_base_shifts_every_seed(monkeypatch):
    from labkit.data import regression
    from labkit.runtime import STRIDE, generator, seed

    monkeypatch.delenv("LABKIT_SEED", raising=False)
    assert seed(3) == 3
    a = regression(5, 1, 1, seed=0).train.y
    g = torch.rand(2, generator=generator(0))
    monkeypatch.setenv("LABKIT_SEED", "2")
    assert seed(3) == 2 * STRIDE + 3
    assert not torch.equal(regression(5, 1, 1, seed=0).train.y, a)
    assert not torch.equal(torch.rand(2, generator=generator(0)), g)
    seed_all(1)
    first = torch.rand(1)
    monkeypatch.setenv("LABKIT_SEED", "3")
    seed_all(1)
    assert not torch.equal(torch.rand(1), first)


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "99999999"])
def test_bad_seed_base_is_a_clear_error(monkeypatch, value):
    from labkit.runtime import seed

    monkeypatch.setenv("LABKIT_SEED", value)
    with pytest.raises(ValueError, match="LABKIT_SEED"):
        seed(0)


def test_seeded_builds_each_model_after_seeding_it():
    from labkit.runtime import seed_all, seeded
    models = seeded(lambda: torch.nn.Linear(3, 2), [4, 7])
    seed_all(7)
    again = torch.nn.Linear(3, 2)
    assert torch.equal(models[1].weight, again.weight)
    assert not torch.equal(models[0].weight, models[1].weight)


def _python(code, **env):
    """Run ``code`` in a fresh Python process (with ``env`` added to the environment);
    it must succeed. Returns what it printed."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_importing_labkit_flushes_subnormals_to_zero_in_every_thread():
    # a fresh process: the setting must be on before torch's thread pool starts, so
    # that a parallel kernel's worker threads flush too (x86 and Arm CPUs have it)
    code = (
        "import labkit.runtime as r, torch\n"
        "assert r.FLUSH_DENORMALS\n"
        "torch.set_num_threads(2)\n"
        "tiny = torch.full((1 << 20,), 1e-20)\n"
        "product = tiny * tiny\n"  # 1e-40 is subnormal in float32: flushed to 0
        "assert float(product.abs().max()) == 0.0, float(product.abs().max())\n"
        "print('ok')\n")
    assert _python(code).strip() == "ok"


def _plain_glibc_malloc():
    """Linux, glibc's malloc with its defaults, and transparent huge pages not forced."""
    import os
    from pathlib import Path

    from labkit.runtime import MALLOC_SETTINGS
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
            and not os.environ.get("LD_PRELOAD")
            and not any(os.environ.get(name) for name in MALLOC_SETTINGS)
            and not (thp.exists() and "[always]" in thp.read_text()))


@pytest.mark.skipif(not _plain_glibc_malloc(), reason="glibc's malloc, as it comes")
def test_importing_labkit_keeps_freed_memory_for_reuse():
    # a fresh process each: the page faults of a sweep's second and third runs (K=16,
    # the roofline benchmark's MLP). With glibc's defaults the steps' megabyte-sized
    # tensors keep landing in fresh memory (about 5,000 faults; 2026-12-05); with
    # labkit's settings the freed memory is reused (0 to 800). The control turns the
    # setting off by hiding glibc from labkit.
    def faults(hide_glibc):
        code = ("import platform, resource\n"
                f"if {hide_glibc}: platform.libc_ver = lambda *a, **k: ('', '')\n"
                "import labkit.runtime as r\n"
                f"assert r.KEEP_FREED_MEMORY != {hide_glibc}\n"
                "from labkit.data import mnist1d\n"
                "from labkit.models import MLP\n"
                "from labkit.sweep import StackedMLP, sweep_fit\n"
                "from labkit.train import FitConfig\n"
                "data = mnist1d(1000, 200, 100)\n"
                "cfg = FitConfig(epochs=2, optimizer='adamw', progress=False)\n"
                "def run():\n"
                "    m = StackedMLP([MLP(40, [128, 128], 10) for _ in range(16)])\n"
                "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
                "    sweep_fit(m, data, cfg)\n"
                "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
                "run()\n"  # the first run grows the heap
                "print(run() + run())\n")
        return int(_python(code))

    assert faults(hide_glibc=False) < 2_000
    assert faults(hide_glibc=True) > 2_000  # the control
    # glibc's own settings win: labkit leaves them (the way to turn it off)
    _python("import labkit.runtime as r\nassert not r.KEEP_FREED_MEMORY",
            MALLOC_TRIM_THRESHOLD_="131072")
