"""Where and how big: device choice, seeds and run profiles.

Every seed a lab uses goes through :func:`seed`: a lab names a *local* seed
(0, 1, 2, ...) and the course-wide base ``LABKIT_SEED`` shifts it, so a reader
can rerun any lab on fresh seeds with ``LABKIT_SEED=7``. The data builders,
``fit``, ``sweep_fit`` and ``StackedMLP.from_seeds`` all take local seeds.

Importing this module (every labkit module that trains does) also turns on
flush-to-zero for CPU floats (see :data:`FLUSH_DENORMALS`) and, on Linux with
glibc's malloc, keeps freed memory for reuse (see :data:`KEEP_FREED_MEMORY`).
"""
import contextlib
import ctypes
import os
import platform
import random

import numpy as np
import torch

__all__ = ["PROFILES", "profile", "pick", "device", "seed_base", "seed", "seeds", "generator",
           "seed_all", "seeded", "no_host_sync", "FLUSH_DENORMALS", "KEEP_FREED_MEMORY"]

PROFILES = ("ci", "default", "full")

# Flush-to-zero on the CPU: floats below 1.2e-38 (subnormals) read and written as 0.
# A confidently classified example's cross-entropy gradient, softmax - onehot, holds
# subnormals, and x86 CPUs take a slow path for every multiply that touches one: the
# hidden layer's weight gradient of the roofline benchmark (K=16 of 128x64 @ 64x128)
# took 104 us on normal floats and 2.3 ms on an all-subnormal gradient, 0.10 ms with
# flush-to-zero (2 cores, Intel Xeon, 2026-12-04; README, Benchmarks). Training loses
# nothing a float32 can show. It is set at import, before torch's thread pool starts,
# because its threads copy the setting when they are created: a process that ran
# parallel torch work before importing labkit keeps subnormals in those threads.
# ``torch.set_flush_denormal(False)`` turns it off. False where the CPU lacks it.
FLUSH_DENORMALS = torch.set_flush_denormal(True)

# A training step allocates and frees the same few tensors of a megabyte or so, step
# after step. glibc's malloc serves blocks that size by mmap, or hands freed memory at
# the top of its heap back to the system, so the next step's tensor is fresh memory:
# a page fault for every 4 kB on first touch, and a cold cache for the matmul writing
# it. The hidden layer's weight gradient of the roofline benchmark (K=16 of
# 128x64 @ 64x128, 1 MB) took 439 us a step inside a training loop against 264 us
# with freed memory kept (186 us alone; 2 cores, AMD EPYC, 2026-12-05). So blocks up
# to 32 MB come from the heap (a 40 MB block was fresh memory every time here even
# with a higher threshold), and up to 256 MB of freed memory at the top of the heap
# stays with the process for the next allocation; the price is memory the process
# keeps. glibc's own settings win: with MALLOC_MMAP_THRESHOLD_,
# MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES set, labkit changes nothing (that is how
# to turn it off), nor under another malloc (jemalloc, tcmalloc by LD_PRELOAD).
# True where the setting took, else False.
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 256 << 20
MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _keep_freed_memory():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" \
            or any(os.environ.get(name) for name in MALLOC_SETTINGS):
        return False
    try:
        process, libc = ctypes.CDLL(None), ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
        if ctypes.cast(process.malloc, ctypes.c_void_p).value != \
                ctypes.cast(libc.malloc, ctypes.c_void_p).value:
            return False  # the process allocates with another malloc
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)
                and mallopt(m_trim_threshold, TRIM_THRESHOLD))


KEEP_FREED_MEMORY = _keep_freed_memory()

# Local seeds run from 0 to STRIDE - 1; base b uses b * STRIDE + local, so bases never overlap.
STRIDE = 100_000
MAX_BASE = (2**32 - 1) // STRIDE - 1    # NumPy's legacy seeding takes at most 2**32 - 1


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


def seed_base() -> int:
    """The course-wide seed base, from ``LABKIT_SEED`` (default 0)."""
    text = os.environ.get("LABKIT_SEED", "").strip() or "0"
    try:
        base = int(text)
    except ValueError:
        base = -1
    if not 0 <= base <= MAX_BASE:
        raise ValueError(f"LABKIT_SEED must be an integer in [0, {MAX_BASE}], got {text!r}")
    return base


def seed(local: int = 0) -> int:
    """The actual seed for a lab's local seed ``local``, shifted by ``LABKIT_SEED``."""
    if isinstance(local, bool) or not isinstance(local, (int, np.integer)) \
            or not 0 <= local < STRIDE:
        raise ValueError(f"a local seed must be an int in [0, {STRIDE}), got {local!r}")
    return seed_base() * STRIDE + int(local)


def seeds(n: int, start: int = 0) -> list:
    """``n`` local seeds ``start, start + 1, ...``: what labs pass to labkit, one per run."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return list(range(start, start + n))


def generator(local: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed(local)``."""
    return torch.Generator().manual_seed(seed(local))


def seed_all(local: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch with ``seed(local)``; return a generator seeded the same."""
    actual = seed(local)
    random.seed(actual)
    np.random.seed(actual)
    torch.manual_seed(actual)
    return generator(local)


def seeded(build, seeds):
    """``build()`` once per local seed, each after ``seed_all(seed)``: model j starts from
    the weights a separate run seeded with ``seeds[j]`` would use."""
    models = []
    for local in seeds:
        seed_all(local)
        models.append(build())
    return models


@contextlib.contextmanager
def no_host_sync(dev):
    """Around the inner training loop: with ``LABKIT_SYNC_DEBUG=error`` (or ``warn``)
    any host-device synchronisation on a CUDA device inside raises (or warns).

    ``fit`` and ``sweep_fit`` synchronise once per epoch, to record the curves,
    and never per step; ``tests/test_gpu.py`` holds them to it. Elsewhere, and
    on other devices, this does nothing.
    """
    mode = os.environ.get("LABKIT_SYNC_DEBUG", "").strip()
    if not mode or dev.type != "cuda":
        yield
        return
    old = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(old)
