"""On a CUDA GPU: the training step never waits for the device, and a sweep is K fits.

Skipped without CUDA. ``LABKIT_SYNC_DEBUG=error`` makes ``labkit.runtime.no_host_sync``
turn any host-device synchronisation inside the inner training loop (an
``.item()``, a device-to-host copy, a blocking copy to the device) into an error.
"""
import dataclasses

import numpy as np
import pytest
import torch

from labkit.data import mnist1d
from labkit.models import MLP
from labkit.runtime import seed_all
from labkit.sweep import Grid, StackedMLP, sweep_fit
from labkit.train import FitConfig, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CFG = FitConfig(epochs=3, batch_size=50, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def data():
    return mnist1d(600, 200, 100, seed=1, device="cuda")


@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setenv("LABKIT_SYNC_DEBUG", "error")


def build(seed, **kw):
    seed_all(seed)
    return MLP(40, [32, 32], 10, **kw).cuda()


def test_the_guard_catches_a_sync(data, strict):
    # the control: a step that calls .item() must fail, or the tests below prove nothing
    def syncing(x, g):
        x.sum().item()
        return x

    with pytest.raises(RuntimeError, match="synchroniz"):
        fit(build(0), data, dataclasses.replace(CFG, augment=syncing))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("kw", [{}, {"dropout": 0.3}, {"batchnorm": True}])
def test_fit_and_sweep_never_sync_per_step(data, strict, optimizer, kw):
    cfg = dataclasses.replace(CFG, optimizer=optimizer, weight_decay=1e-3)
    fit(build(0, **kw), data, cfg)
    kw = dict(kw)
    dropout = kw.pop("dropout", 0.0)
    stacked = StackedMLP([build(s, **kw) for s in range(4)], dropout=dropout)
    sweep_fit(stacked, data, dataclasses.replace(cfg, patience=2),
              grid=Grid(lr=[1e-3, 3e-3], seed=[0, 1]))


@pytest.mark.parametrize("optimizer,rtol", [("sgd", 1e-4), ("adam", 5e-3), ("adamw", 5e-3)])
def test_sweep_matches_separate_fits_on_the_gpu(data, optimizer, rtol):
    cfg = dataclasses.replace(CFG, optimizer=optimizer)
    decays, lrs = [0.0, 1e-3, 3e-2], [cfg.lr, cfg.lr / 2, cfg.lr * 2]
    sh = sweep_fit(StackedMLP([build(s) for s in range(3)]), data, cfg, lr=lrs,
                   weight_decay=decays)
    for k in range(3):
        h = fit(build(k), data, dataclasses.replace(cfg, lr=lrs[k], weight_decay=decays[k]))
        np.testing.assert_allclose(sh.val_loss[:, k], h.val_loss, rtol=rtol)
        np.testing.assert_allclose(sh.train_loss[:, k], h.train_loss, rtol=rtol)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "vmap"])
def test_stacked_cnn_sweep_never_syncs_per_step(data, strict, fold):
    from labkit.models import CNN
    from labkit.vmapped import StackedModel

    def cnn(seed, p):
        seed_all(seed)
        return CNN(1, 10, (8, 16), dropout=p, batchnorm=True, dims=1, kernel=5).cuda()

    stacked = StackedModel([cnn(s, p) for s, p in [(0, 0.1), (1, 0.1), (0, 0.3), (1, 0.3)]],
                           fold=fold)
    h = sweep_fit(stacked, data, dataclasses.replace(CFG, optimizer="adamw", patience=2),
                  grid=Grid(p=[0.1, 0.3], seed=[0, 1]))
    assert np.isfinite(h.val_loss).all() and h.val_loss.shape[1:] == (2, 2)
