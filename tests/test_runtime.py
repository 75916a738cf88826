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
