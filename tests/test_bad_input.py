"""Every bad argument labkit promises to reject, with the message a user sees."""
import copy
import dataclasses
import math
import pickle
import warnings

import numpy as np
import pytest
import torch

from labkit import data as D
from labkit.models import CNN, MLP
from labkit.runtime import profile, seed_all
from labkit.sweep import StackedMLP, SweepHistory, sweep_fit
from labkit.train import DivergenceError, FitConfig, fit
from labkit.vmapped import StackedModel
from labkit.widgets import explore


def tiny():
    return D.from_arrays(torch.randn(40, 3), torch.randint(0, 2, (40,)), 20, 10, 10,
                         num_classes=2, device="cpu")


CASES = {
    "profile name": (lambda: profile(), ValueError, "LABKIT_PROFILE='fast'"),
    "negative seed": (lambda: seed_all(-1), ValueError, "local seed"),
    "dropout p = 1": (lambda: MLP(4, [8], 2, dropout=1.0), ValueError, "[0, 1)"),
    "curves of a test split": (lambda: FitConfig(curves=("test",)), ValueError,
                               "curves must be a tuple of 'train' and/or 'val'"),
    "patience without its split's curves": (
        lambda: fit(MLP(3, [4], 2), tiny(), FitConfig(patience=2, curves=("train",))),
        ValueError, "watches the val split every epoch, but curves=('train',) leaves it out"),
    "patience in a sweep without curves": (
        lambda: sweep_fit(StackedMLP([MLP(3, [4], 2)]), tiny(), FitConfig(patience=2, curves=())),
        ValueError, "watches the val split every epoch, but curves=() leaves it out"),
    "curves at no epoch": (lambda: FitConfig(curves_at="never"), ValueError,
                           "curves_at must be 'every epoch' or 'last epoch'"),
    "patience with curves at the last epoch": (
        lambda: FitConfig(patience=2, curves_at="last epoch"), ValueError,
        "early stopping (patience) watches every epoch"),
    "dropout p < 0": (lambda: MLP(4, [8], 2, dropout=-0.1), ValueError, "[0, 1)"),
    "dropout p nan": (lambda: CNN(1, 2, dropout=math.nan), ValueError, "[0, 1)"),
    "dropout p bool": (lambda: MLP(4, [8], 2, dropout=True), ValueError, "[0, 1)"),
    "zero width": (lambda: MLP(4, [0], 2), ValueError, "positive ints"),
    "MLP input shape": (lambda: MLP(4, [8], 2)(torch.zeros(3, 5)), ValueError, "expects 4 features"),
    "CNN input shape": (lambda: CNN(3, 2)(torch.zeros(2, 1, 8, 8)), ValueError, "(N, 3, H, W)"),
    "CNN 1-D input shape": (lambda: CNN(2, 3, dims=1)(torch.zeros(4, 40)), ValueError,
                            "(N, 2, L), got (4, 40)"),
    "CNN 1-D channels": (lambda: CNN(1, 3, dims=1)(torch.zeros(4, 2, 40)), ValueError,
                         "(N, 1, L) or (N, L)"),
    "CNN dims": (lambda: CNN(1, 2, dims=3), ValueError, "dims must be 1 (signals) or 2"),
    "CNN even kernel": (lambda: CNN(1, 2, dims=1, kernel=4), ValueError, "odd positive int"),
    "negative decay": (lambda: FitConfig(weight_decay=-1e-4), ValueError, "weight_decay must be >= 0"),
    "zero lr": (lambda: FitConfig(lr=0), ValueError, "lr must be"),
    "unknown optimizer": (lambda: FitConfig(optimizer="rmsprop"), ValueError, "optimizer must be"),
    "zero epochs": (lambda: FitConfig(epochs=0), ValueError, "epochs"),
    "bad patience": (lambda: FitConfig(patience=0), ValueError, "patience"),
    "unknown monitor": (lambda: FitConfig(monitor="loss"), ValueError, "monitor must be"),
    "accuracy on regression": (lambda: fit(MLP(1, [4], 1), D.regression(5, 5, 5, device="cpu"),
                                           FitConfig(epochs=1, monitor="val_acc", progress=False)),
                               ValueError, "needs a classification task"),
    "x/y rows differ": (lambda: D.Split(torch.zeros(3, 2), torch.zeros(4)), ValueError, "3 rows but y has 4"),
    "too many examples": (lambda: D.digits(2000, 10, 10), ValueError, "only 1797 exist"),
    "non-positive size": (lambda: D.digits(0, 10, 10), ValueError, "n_train must be a positive int"),
    "negative noise": (lambda: D.regression(noise=-1), ValueError, "noise must be >= 0"),
    "flip fraction": (lambda: D.flip_labels(tiny().train, 1.5, 2), ValueError, "fraction"),
    "resample too many": (lambda: D.resample(tiny().train, 99, 0, replace=False), ValueError, "without replacement"),
    "labels out of range": (lambda: fit(MLP(3, [4], 2), D.Dataset(
        D.Split(torch.randn(8, 3), torch.full((8,), 5)), tiny().val, tiny().test, 2),
        FitConfig(epochs=1, progress=False)), ValueError, "labels must be in [0, 2)"),
    "float class labels": (lambda: fit(MLP(3, [4], 2), D.Dataset(
        D.Split(torch.randn(8, 3), torch.zeros(8)), tiny().val, tiny().test, 2),
        FitConfig(epochs=1, progress=False)), ValueError, "1-D long tensor"),
    "too few outputs": (lambda: fit(MLP(3, [4], 1), tiny(), FitConfig(epochs=1, progress=False)),
                        ValueError, "expected (N, 2) class scores"),
    "regression shape": (lambda: fit(MLP(1, [4], 2), D.regression(5, 5, 5, device="cpu"),
                                     FitConfig(epochs=1, progress=False)), ValueError, "targets have shape"),
    "sweep of non-MLPs": (lambda: StackedMLP([CNN(1, 2)]), ValueError, "labkit.models.MLP"),
    "sweep shapes differ": (lambda: StackedMLP([MLP(3, [4], 2), MLP(3, [5], 2)]), ValueError, "same architecture"),
    "sweep dropout count": (lambda: StackedMLP([MLP(3, [4], 2)] * 2, dropout=[0.1, 0.2, 0.3]),
                            ValueError, "1 or 2 values"),
    "sweep dropout value": (lambda: StackedMLP([MLP(3, [4], 2)] * 2, dropout=[0.1, 1.0]), ValueError, "[0, 1)"),
    "sweep negative decay": (lambda: sweep_fit(StackedMLP([MLP(3, [4], 2)] * 2), tiny(),
                                               FitConfig(epochs=1, progress=False), weight_decay=[0, -1]),
                             ValueError, "weight_decay >= 0"),
    "sweep train_index": (lambda: sweep_fit(StackedMLP([MLP(3, [4], 2)] * 2), tiny(),
                                            FitConfig(epochs=1, progress=False),
                                            train_index=torch.zeros(3, 5, dtype=torch.long)),
                          ValueError, "shape (K=2, n)"),
    "sweep augment K": (lambda: sweep_fit(StackedMLP([MLP(3, [4], 2)] * 2), tiny(),
                                          FitConfig(epochs=1, progress=False,
                                                    augment=lambda x, g: x.expand(3, -1, -1))),
                        ValueError, "must have K=2 first"),
    "stack of non-modules": (lambda: StackedModel([1, 2]), ValueError, "list of nn.Module"),
    "stack shapes differ": (lambda: StackedModel([CNN(1, 2, (4,), dims=1), CNN(1, 2, (5,), dims=1)]),
                            ValueError, "same architecture"),
    "stack types differ": (lambda: StackedModel([CNN(1, 2, (4,), dims=1, kernel=3),
                                                    torch.nn.Sequential(*CNN(1, 2, (4,), dims=1))]),
                              ValueError, "same architecture"),
    "stack strides differ": (lambda: StackedModel([torch.nn.Conv1d(1, 2, 3, stride=s) for s in (1, 2)]),
                             ValueError, "module types and settings"),
    "stack per-model K": (lambda: StackedModel([CNN(1, 2, (4,), dims=1)] * 2)(
        torch.zeros(3, 5, 1, 8)), ValueError, "K=2 first"),
    "stack input axes": (lambda: StackedModel([CNN(1, 2, (4,), dims=1)] * 2)(torch.zeros(8)),
                         ValueError, "with 2 axes per example"),
    "sweep of a plain CNN": (lambda: sweep_fit(CNN(3, 2, dims=1), tiny(), FitConfig(epochs=1, progress=False)),
                             ValueError, "StackedMLP or a StackedModel"),
    "sweep CNN data shape": (lambda: sweep_fit(StackedModel([CNN(2, 2, (4,), dims=1)] * 2), tiny(),
                                               FitConfig(epochs=1, progress=False)),
                             ValueError, "expects input of shape (N, 2, L), got (2, 3)"),
    "sweep CNN augment K": (lambda: sweep_fit(StackedModel([CNN(1, 2, (4,), dims=1)] * 2), tiny(),
                                              FitConfig(epochs=1, progress=False,
                                                        augment=lambda x, g: x.expand(3, -1, -1))),
                            ValueError, "must have K=2 first"),
    "explore default": (lambda: explore(lambda a: None, {"a": 3}, a=[1, 2]), ValueError, "not among"),
    "cifar missing": (lambda: D.cifar10("/nonexistent-dir"), FileNotFoundError, "labkit never downloads"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_rejected_with_clear_message(case, monkeypatch):
    monkeypatch.setenv("LABKIT_PROFILE", "fast")
    call, error, fragment = CASES[case]
    with pytest.raises(error) as info:
        call()
    assert fragment in str(info.value)


def test_cifar_bad_file(tmp_path):
    for name in D.CIFAR_FILES:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": [[1, 2, 3]], b"labels": [0]}, f)
    with pytest.raises(ValueError, match=r"expected data of shape \(N, 3072\)"):
        D.cifar10(tmp_path)


def test_divergence_keeps_history():
    d = D.regression(n_train=32, n_val=16, n_test=16, device="cpu")
    cfg = FitConfig(epochs=50, lr=1e3, optimizer="sgd", momentum=0.9, batch_size=8, progress=False)
    seed_all(0)
    with pytest.raises(DivergenceError, match="diverged at epoch") as info:
        fit(MLP(1, [32, 32], 1), d, cfg)
    assert isinstance(info.value, FloatingPointError)
    assert len(info.value.history.epoch) == len(info.value.history.train_loss)


def test_sweep_divergence_stops_only_that_model():
    d = D.regression(n_train=32, n_val=16, n_test=16, device="cpu")
    seed_all(0)
    nets = [MLP(1, [32, 32], 1) for _ in range(3)]
    cfg = FitConfig(epochs=30, optimizer="sgd", momentum=0.9, batch_size=8, progress=False)
    with pytest.warns(RuntimeWarning, match=r"models \[1\] \(model=1, lr=1000\) diverged at epoch \d+"):
        history = sweep_fit(StackedMLP(copy.deepcopy(nets)), d, cfg, lr=[1e-3, 1e3, 1e-2])
    assert history.diverged.tolist() == [False, True, False]
    at = history.diverged_at[1]
    assert 0 <= at < 30 and len(history.train_loss) == 30        # the others trained to the end
    assert np.isnan(history.train_loss[at:, 1]).all() and np.isfinite(history.train_loss[:at, 1]).all()
    # Nothing lost: the models that did not diverge end exactly as they would without it.
    alone = sweep_fit(StackedMLP([copy.deepcopy(nets[0]), copy.deepcopy(nets[2])]), d, cfg, lr=[1e-3, 1e-2])
    np.testing.assert_allclose(history.val_loss[:, [0, 2]], alone.val_loss, rtol=1e-5)
    assert not alone.diverged.any()
    # With early stopping, the diverged model is restored to its best (finite) weights.
    stacked = StackedMLP(copy.deepcopy(nets))
    with pytest.warns(RuntimeWarning, match=r"models \[1\] \(model=1, lr=1000\) diverged"):
        sweep_fit(stacked, d, dataclasses.replace(cfg, patience=5), lr=[1e-3, 1e3, 1e-2])
    assert all(torch.isfinite(w).all() for w in stacked.parameters())


@pytest.mark.parametrize("curves", [dict(curves=()), dict(curves_at="last epoch")],
                         ids=["no curves", "curves at the last epoch"])
def test_divergence_is_caught_without_training_curves(curves):
    # curves=() evaluates no split, and curves_at="last epoch" none before the last
    # epoch: a model has diverged when its weights are not finite
    d = D.regression(n_train=32, n_val=16, n_test=16, device="cpu")
    seed_all(0)
    nets = [MLP(1, [32, 32], 1) for _ in range(3)]
    cfg = FitConfig(epochs=30, optimizer="sgd", momentum=0.9, batch_size=8, progress=False,
                    **curves)
    with pytest.warns(RuntimeWarning, match=r"models \[1\] \(model=1, lr=1000\) diverged"):
        history = sweep_fit(StackedMLP(copy.deepcopy(nets)), d, cfg, lr=[1e-3, 1e3, 1e-2])
    assert history.diverged.tolist() == [False, True, False]
    assert history.diverged_at[1] < cfg.epochs - 1  # caught before the last epoch
    with pytest.raises(DivergenceError, match=r"weights, batch-norm statistics or validation"):
        fit(copy.deepcopy(nets[0]), d, dataclasses.replace(cfg, lr=1e3))


def test_batchnorm_statistics_that_overflow_count_as_divergence():
    # a batch-norm model can keep finite weights while its running variance overflows
    # (its outputs in eval mode are then NaN): without training curves it must still
    # count as diverged, as it does when the training loss is evaluated
    d = D.mnist1d(n_train=200, n_val=100, n_test=100, seed=0, device="cpu")
    seed_all(0)
    lrs = [1e-3, 3, 10, 30, 100, 1e3, 1e4, 1e5]
    nets = [MLP(40, [64, 64], 10, batchnorm=True) for _ in lrs]
    cfg = FitConfig(epochs=6, batch_size=50, progress=False, optimizer="sgd", momentum=0.9)
    flags = []
    for curves in [("train", "val"), ()]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            h = sweep_fit(StackedMLP(copy.deepcopy(nets)), d,
                          dataclasses.replace(cfg, curves=curves), lr=lrs)
        flags.append(h.diverged.tolist())
    assert flags[0] == flags[1] and flags[0][0] is False and any(flags[0]), flags
    with pytest.raises(DivergenceError, match="batch-norm statistics"):
        fit(copy.deepcopy(nets[5]), d, dataclasses.replace(cfg, curves=(), lr=1e3))


def test_sweep_divergence_of_every_model_keeps_history():
    d = D.regression(n_train=32, n_val=16, n_test=16, device="cpu")
    seed_all(0)
    stacked = StackedMLP([MLP(1, [32, 32], 1), MLP(1, [32, 32], 1)])
    cfg = FitConfig(epochs=50, optimizer="sgd", batch_size=8, progress=False)
    with pytest.raises(DivergenceError, match=r"all 2 models diverged \(the last at epoch 1\)") as info, \
            pytest.warns(RuntimeWarning, match=r"models \[0\] \(model=0, lr=2\) diverged at epoch 0"):
        sweep_fit(stacked, d, cfg, lr=[2.0, 1.0])
    history = info.value.history
    assert isinstance(history, SweepHistory) and history.train_loss.shape == (1, 2)
    assert history.diverged_at.tolist() == [0, 1]
    assert np.isnan(history.train_loss[0, 0]) and np.isfinite(history.train_loss[0, 1])
