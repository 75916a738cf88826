"""Where and how big: device choice, seeding and run profiles."""
import os
import random

import numpy as np
import torch

__all__ = ["PROFILES", "profile", "pick", "device", "seed_all"]

PROFILES = ("ci", "default", "full")


def profile() -> str:
    """The run profile, from ``LABKIT_PROFILE`` (``ci``, ``default`` or ``full``)."""
    name = os.environ.get("LABKIT_PROFILE", "default").strip().lower() or "default"
    if name not in PROFILES:
        raise ValueError(f"LABKIT_PROFILE={name!r} is not one of {', '.join(PROFILES)}")
    return name


def pick(ci, default, full=None):
    """The value for the current profile: ``pick(ci=500, default=2000, full=20000)``.

    ``full`` falls back to ``default`` when not given.
    """
    return {"ci": ci, "default": default, "full": default if full is None else full}[profile()]


def device(name: str | None = None) -> torch.device:
    """The device to train on: ``LABKIT_DEVICE`` if set, else cuda, then mps, then cpu."""
    name = name or os.environ.get("LABKIT_DEVICE")
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for but CUDA is not available")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {name!r} was asked for but MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_all(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh CPU generator seeded the same."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
