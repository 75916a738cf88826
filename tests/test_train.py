import copy
import dataclasses

import pytest
import torch

from labkit.data import regression
from labkit.models import CNN, MLP
from labkit.runtime import seed_all
from labkit.train import FitConfig, evaluate, fit

CFG = FitConfig(epochs=8, batch_size=64, lr=3e-3, progress=False)


def test_fit_learns_and_records_every_epoch(small_mnist1d):
    seed_all(0)
    model = MLP(40, [64], 10)
    before = evaluate(model, small_mnist1d.val)[1].item()
    h = fit(model, small_mnist1d, CFG)
    assert h.epoch == list(range(8))
    assert all(len(getattr(h, k)) == 8 for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"))
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.last["val_acc"] > before + 0.15
    assert h.last["val_acc"] == pytest.approx(evaluate(model, small_mnist1d.val)[1].item())


def test_fit_is_deterministic(small_mnist1d):
    runs = []
    for _ in range(2):
        seed_all(1)
        runs.append(fit(MLP(40, [32], 10, dropout=0.2), small_mnist1d, CFG).val_loss)
    assert runs[0] == runs[1]


def test_cnn_trains_on_images():
    from labkit.data import digits

    d = digits(300, 100, 100, image=True, device="cpu")
    seed_all(0)
    h = fit(CNN(1, 10, widths=(8, 16), batchnorm=True, dropout=0.1), d,
            dataclasses.replace(CFG, epochs=15, batch_size=32, lr=1e-2))
    assert h.last["val_acc"] > 0.5


def test_one_host_sync_per_metric_per_epoch(small_mnist1d, monkeypatch):
    """No per-step .item(): the number of syncs must not grow with the number of steps."""
    calls = []
    original = torch.Tensor.item

    def counting_item(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    fit(MLP(40, [16], 10), small_mnist1d, dataclasses.replace(CFG, epochs=3, batch_size=16))
    steps = 3 * len(small_mnist1d.train) // 16
    assert len(calls) <= 4 * 3 + 2 < steps


def test_early_stopping_stops_and_restores_best():
    d = regression(n_train=20, n_val=200, n_test=10, noise=0.3, seed=0, device="cpu")
    seed_all(0)
    model = MLP(1, [128, 128], 1)
    cfg = FitConfig(epochs=2000, batch_size=20, lr=1e-2, patience=30, progress=False)
    h = fit(model, d, cfg)
    assert h.stopped_early and len(h.epoch) < 2000
    assert h.epoch[-1] == h.best_epoch + 30
    assert min(h.val_loss) == h.best["val_loss"]
    assert evaluate(model, d.val, torch.nn.functional.mse_loss)[0].item() == pytest.approx(
        h.best["val_loss"], rel=1e-6)


def test_hooks_are_called(small_mnist1d):
    seen = {"penalty": 0, "after": [], "augment": 0}

    def penalty(model):
        seen["penalty"] += 1
        return sum(p.abs().sum() for p in model.parameters()) * 0.0

    def after(model, lr):
        seen["after"].append(lr)

    def augment(x, g):
        seen["augment"] += 1
        return x + 0.0 * torch.randn(x.shape, generator=g)

    cfg = dataclasses.replace(CFG, epochs=3, batch_size=300, penalty=penalty, after_step=after,
                              augment=augment, lr_schedule=lambda e: 0.5 ** e)
    h = fit(MLP(40, [8], 10), small_mnist1d, cfg)
    assert seen["penalty"] == seen["augment"] == 6
    assert seen["after"] == [3e-3, 3e-3, 1.5e-3, 1.5e-3, 7.5e-4, 7.5e-4]
    assert h.lr == [3e-3, 1.5e-3, 7.5e-4]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_weight_decay_shrinks_weights(small_mnist1d, optimizer):
    norms = []
    for wd in (0.0, {"sgd": 0.5, "adam": 0.5, "adamw": 10.0}[optimizer]):
        seed_all(0)
        model = MLP(40, [32], 10)
        fit(model, small_mnist1d, dataclasses.replace(CFG, optimizer=optimizer, weight_decay=wd,
                                                      lr=1e-2 if optimizer == "sgd" else 3e-3))
        norms.append(sum(p.pow(2).sum() for p in model.parameters()).item())
    assert norms[1] < 0.7 * norms[0]


def test_fit_without_validation_monitors_training_loss(small_mnist1d):
    from labkit.data import Dataset, Split

    d = small_mnist1d
    empty = Split(d.val.x[:0], d.val.y[:0])
    h = fit(MLP(40, [16], 10), Dataset(d.train, empty, d.test, 10),
            dataclasses.replace(CFG, epochs=4, patience=2))
    assert all(v != v for v in h.val_loss)  # NaN: nothing to measure
    assert h.best_epoch == h.train_loss.index(min(h.train_loss))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_fused_optimizer_equals_torch_optim(optimizer):
    # fit's optimizer calls the fused kernels directly: the weights must be identical,
    # step after step, to torch.optim's with fused=True (with decay, momentum, and a
    # parameter that gets no gradient)
    from labkit.train import FusedOptimizer

    cfg = FitConfig(optimizer=optimizer, lr=3e-3, weight_decay=1e-2)
    torch.manual_seed(0)
    a = MLP(40, [32, 32], 10)
    a.register_parameter("unused", torch.nn.Parameter(torch.ones(3)))
    b = copy.deepcopy(a)
    kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    extra = {"momentum": cfg.momentum} if optimizer == "sgd" else {}
    ref = kind[optimizer](a.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True,
                          **extra)
    ours = FusedOptimizer(b.parameters(), cfg)
    for step in range(5):
        x, y = torch.randn(16, 40), torch.randint(0, 10, (16,))
        for model, opt in ((a, ref), (b, ours)):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q), f"step {step}: {optimizer} weights differ"
