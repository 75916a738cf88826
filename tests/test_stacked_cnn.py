"""K CNNs trained at once (labkit.vmapped.StackedModel) must give what K separate fits give."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from labkit.data import Dataset, from_arrays
from labkit.models import CNN
from labkit.runtime import seed_all
from labkit.sweep import Grid, StackedModel, sweep_fit
from labkit.train import FitConfig, fit

CFG = FitConfig(epochs=3, batch_size=50, lr=1e-2, progress=False)


def cnns(k, batchnorm=False, dropout=0.0):
    models = []
    for s in range(k):
        torch.manual_seed(s)
        models.append(CNN(1, 10, (6, 8), dropout=dropout, batchnorm=batchnorm, dims=1,
                          kernel=5))
    return models


def states_close(a, b, tol):
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        if p.is_floating_point():
            torch.testing.assert_close(p, q, rtol=tol, atol=tol, msg=n)
        else:
            assert torch.equal(p, q), n


def test_cnn_1d_takes_signals_with_or_without_the_channel_axis():
    model = CNN(1, 10, (6, 8), dims=1, kernel=5).eval()
    x = torch.randn(4, 40)
    assert model(x).shape == (4, 10)
    torch.testing.assert_close(model(x), model(x[:, None]))
    assert CNN(3, 2, dims=1)(torch.randn(2, 3, 17)).shape == (2, 2)  # odd length: ceil pooling


@pytest.mark.parametrize("optimizer,rtol", [("sgd", 1e-4), ("adam", 5e-3), ("adamw", 5e-3)])
@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("fold", [True, False], ids=["folded", "vmap"])
def test_stacked_cnns_match_separate_fits(small_mnist1d, optimizer, rtol, batchnorm, fold):
    cfg = dataclasses.replace(CFG, optimizer=optimizer, lr=1e-2 if optimizer == "sgd" else 3e-3)
    decays, lrs = [0.0, 1e-3, 3e-2], [cfg.lr, cfg.lr / 2, cfg.lr * 2]
    stacked = StackedModel(cnns(3, batchnorm), fold=fold)
    assert stacked.folded == fold
    sh = sweep_fit(stacked, small_mnist1d, cfg, lr=lrs, weight_decay=decays)
    for k, model in enumerate(cnns(3, batchnorm)):
        h = fit(model, small_mnist1d, dataclasses.replace(cfg, lr=lrs[k], weight_decay=decays[k]))
        np.testing.assert_allclose(sh.val_loss[:, k], h.val_loss, rtol=rtol)
        np.testing.assert_allclose(sh.train_loss[:, k], h.train_loss, rtol=rtol)
        # parameters and buffers (running statistics, batch counts) of model k
        states_close(stacked.unstack(k, cnns(1, batchnorm)[0]), model, 50 * rtol)


def test_train_index_equals_fitting_on_that_subset(small_mnist1d):
    index = torch.randint(0, 600, (2, 400), generator=torch.Generator().manual_seed(0))
    stacked = StackedModel(cnns(2, batchnorm=True))
    cfg = dataclasses.replace(CFG, optimizer="sgd")
    sh = sweep_fit(stacked, small_mnist1d, cfg, train_index=index)
    assert not torch.allclose(stacked.get_buffer("1__running_mean")[0],
                              stacked.get_buffer("1__running_mean")[1])  # per-model statistics
    for k, model in enumerate(cnns(2, batchnorm=True)):
        d = small_mnist1d
        h = fit(model, Dataset(d.train.take(index[k]), d.val, d.test, d.num_classes), cfg)
        np.testing.assert_allclose(sh.val_loss[:, k], h.val_loss, rtol=1e-4)
        states_close(stacked.unstack(k, cnns(1, batchnorm=True)[0]), model, 5e-3)


def test_augment_and_transform_per_model(small_mnist1d):
    # augment returns (K, N, L): model k trains on its own batch, as a fit with that
    # augmentation would; transform gives per-model soft targets (K, N, C)
    scales, eps = [1.0, -1.0, 0.5], [0.0, 0.1, 0.3]
    per_scale = torch.tensor(scales)[:, None, None]

    def smooth(y, e):
        return torch.nn.functional.one_hot(y, 10).float() * (1 - e) + e / 10

    cfg = dataclasses.replace(
        CFG, optimizer="sgd", augment=lambda x, g: x.expand(3, -1, -1) * per_scale,
        transform=lambda x, y, g: (x, torch.stack([smooth(y, e) for e in eps])))
    sh = sweep_fit(StackedModel(cnns(3)), small_mnist1d, cfg)
    for k, model in enumerate(cnns(3)):
        h = fit(model, small_mnist1d, dataclasses.replace(
            cfg, augment=lambda x, g, c=scales[k]: x * c,
            transform=lambda x, y, g, e=eps[k]: (x, smooth(y, e))))
        np.testing.assert_allclose(sh.train_loss[:, k], h.train_loss, rtol=1e-4)


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "vmap"])
def test_dropout_masks_differ_per_model_and_respect_each_rate(fold):
    same = cnns(1, dropout=0.5)[0]
    rates = [0.5, 0.5, 0.2]
    models = []
    for p in rates:
        m = cnns(1, dropout=p)[0]
        m.load_state_dict(same.state_dict())
        models.append(m)
    stacked = StackedModel(models, fold=fold)
    x = torch.randn(8, 1, 40)
    stacked.train()
    out = stacked(x)
    assert not torch.allclose(out[0], out[1])  # same weights, same p, different masks
    stacked.eval()
    expected = stacked(x)
    torch.testing.assert_close(expected[0], same.eval()(x))  # no dropout at evaluation
    # the rate: a stack of conv (weights one) + dropout, fed ones, zeroes a fraction p of
    # each model's units (a check of the mean of 160,000 draws, within 4 standard errors)
    layers = []
    for p in rates:
        layer = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 1, bias=False), torch.nn.Dropout(p))
        torch.nn.init.ones_(layer[0].weight)
        layers.append(layer)
    probe = StackedModel(layers, example_ndim=2, fold=fold).train()
    n = 20000
    fractions = (probe(torch.ones(n, 1, 1)) == 0).float().mean((1, 2, 3)).tolist()
    for f, p in zip(fractions, rates):
        assert abs(f - p) < 4 * (p * (1 - p) / (n * 8)) ** 0.5, (f, p)
    assert probe.get_buffer("1__p").tolist() == pytest.approx(rates)
    # inverted dropout: the mean training output equals the evaluation output
    copies = x.repeat(100, 1, 1)  # 100 copies of each example, each its own masks
    mean = torch.stack([stacked(copies).view(3, 100, 8, 10).mean(1) for _ in range(20)]).mean(0)
    torch.testing.assert_close(mean[2], expected[2], rtol=0, atol=0.02)


def test_early_stopping_restores_each_models_best(small_mnist1d):
    d = small_mnist1d
    cfg = dataclasses.replace(CFG, epochs=16, optimizer="adam", lr=3e-2, patience=3)
    stacked = StackedModel(cnns(2, batchnorm=True))
    sh = sweep_fit(stacked, d, cfg, lr=[3e-2, 1e-2])
    for k, model in enumerate(cnns(2, batchnorm=True)):
        h = fit(model, d, dataclasses.replace(cfg, lr=[3e-2, 1e-2][k]))
        assert sh.best_epoch[k] == h.best_epoch
        assert sh.best["val_loss"][k] == pytest.approx(h.best["val_loss"], rel=1e-3)
        back = stacked.unstack(k, cnns(1, batchnorm=True)[0]).eval()
        torch.testing.assert_close(back(d.val.x), model.eval()(d.val.x), rtol=1e-3, atol=1e-4)
    # model 0 stopped early and was restored to an earlier epoch than model 1's best
    assert sh.best_epoch[0] + cfg.patience < cfg.epochs - 1
    assert sh.best_epoch[0] != sh.best_epoch[1]


def test_from_seeds_grid_and_chunked_evaluation(small_mnist1d, monkeypatch):
    import labkit.sweep as sweep_module

    grid = Grid(lr=[1e-2, 3e-3], seed=[0, 1])
    stacked = StackedModel.from_grid(lambda: CNN(1, 10, (6, 8), dims=1, kernel=5), grid)
    for j, seed in enumerate(grid["seed"]):
        seed_all(seed)
        expected = CNN(1, 10, (6, 8), dims=1, kernel=5)
        states_close(stacked.unstack(j, CNN(1, 10, (6, 8), dims=1, kernel=5)), expected, 0)
    cfg = dataclasses.replace(CFG, epochs=2)
    h = sweep_fit(stacked, small_mnist1d, cfg, grid=grid)
    assert h.val_loss.shape == (2, 2, 2)
    monkeypatch.setattr(sweep_module, "EVAL_ROWS", 7)  # chunks of 16 examples, a ragged last
    again = sweep_fit(StackedModel.from_grid(lambda: CNN(1, 10, (6, 8), dims=1, kernel=5), grid),
                      small_mnist1d, cfg, grid=grid)
    np.testing.assert_allclose(again.val_loss, h.val_loss, rtol=1e-5)


def test_image_cnns_stack_too():
    x = torch.randn(60, 1, 8, 8)
    d = from_arrays(x, torch.randint(0, 3, (60,)), 40, 10, 10, num_classes=3, device="cpu")
    cfg = dataclasses.replace(CFG, epochs=2, batch_size=16, optimizer="sgd")
    build = lambda: CNN(1, 3, (4,), batchnorm=True)  # noqa: E731
    sh = sweep_fit(StackedModel.from_seeds(build, [0, 1]), d, cfg)
    for k in range(2):
        seed_all(k)
        h = fit(build(), d, cfg)
        np.testing.assert_allclose(sh.val_loss[:, k], h.val_loss, rtol=1e-4)


def test_a_leading_unflatten_folds_and_matches_vmap(small_mnist1d):
    # the MNIST-1D paper's CNN reads (N, 40) signals through nn.Unflatten(1, (1, 40))
    from torch import nn

    def build():
        return nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 4, 5, stride=2, padding=1),
                             nn.ReLU(), nn.Conv1d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(40, 10))

    x = small_mnist1d.train.x[:32]
    folded = StackedModel.from_seeds(build, [0, 1, 2], example_ndim=1)
    vmapped = StackedModel.from_seeds(build, [0, 1, 2], example_ndim=1, fold=False)
    assert folded.folded and not vmapped.folded
    torch.testing.assert_close(folded(x), vmapped(x))
    own = x.expand(3, -1, -1) * torch.tensor([1.0, -1.0, 0.5])[:, None, None]
    torch.testing.assert_close(folded(own), vmapped(own))
    seed_all(1)
    torch.testing.assert_close(folded(x)[1], build()(x))


def test_any_module_stacks_through_vmap(small_mnist1d):
    # the generic path: K MLPs as a StackedModel (vmap) train as K separate fits do
    from labkit.models import MLP

    build = lambda: MLP(40, [16], 10, batchnorm=True)  # noqa: E731
    stacked = StackedModel.from_seeds(build, [0, 1], example_ndim=1)
    assert not stacked.folded
    cfg = dataclasses.replace(CFG, optimizer="adamw", lr=3e-3, weight_decay=1e-2)
    sh = sweep_fit(stacked, small_mnist1d, cfg)
    for k in range(2):
        seed_all(k)
        h = fit(build(), small_mnist1d, cfg)
        np.testing.assert_allclose(sh.val_loss[:, k], h.val_loss, rtol=5e-3)


def test_divergence_stops_only_that_cnn(small_mnist1d):
    # model 1's inputs are scaled by infinity: its loss is NaN from the first batch
    scale = torch.tensor([1.0, math.inf, 1.0])[:, None, None]
    cfg = dataclasses.replace(CFG, epochs=3, optimizer="sgd",
                              augment=lambda x, g: x.expand(3, -1, -1) * scale)
    with pytest.warns(RuntimeWarning, match=r"models \[1\] .* diverged at epoch 0"):
        h = sweep_fit(StackedModel(cnns(3)), small_mnist1d, cfg, lr=[1e-2, 1e-2, 3e-3])
    assert h.diverged.tolist() == [False, True, False]
    assert np.isnan(h.train_loss[:, 1]).all()
    alone = sweep_fit(StackedModel([cnns(3)[0], cnns(3)[2]]), small_mnist1d,
                      dataclasses.replace(cfg, augment=None), lr=[1e-2, 3e-3])
    np.testing.assert_allclose(h.val_loss[:, [0, 2]], alone.val_loss, rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fused_and_plain_optimizer_steps_agree_on_cnns(small_mnist1d, optimizer, monkeypatch):
    # flatten() on a StackedModel's parameters, stepped by the fused kernels and by the
    # tensor-operation fallback (devices without them)
    import labkit.optim as optim_module

    cfg = dataclasses.replace(CFG, optimizer=optimizer, epochs=2, lr=3e-3)
    runs = []
    for fused in (True, False):
        monkeypatch.setattr(optim_module, "FUSED", fused)
        model = StackedModel(cnns(2, batchnorm=True))
        runs.append((sweep_fit(model, small_mnist1d, cfg, weight_decay=[0.0, 1e-2]), model))
    (a, ma), (b, mb) = runs
    np.testing.assert_allclose(a.val_loss, b.val_loss, rtol=1e-4)
    for p, q in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_from_grid_passes_the_axes_build_names():
    grid = Grid(dropout=[0.1, 0.4], seed=[0, 1])
    stacked = StackedModel.from_grid(
        lambda dropout: CNN(1, 10, (6, 8), dropout=dropout, dims=1, kernel=5), grid)
    assert stacked.get_buffer("8__p").tolist() == pytest.approx(grid["dropout"])
    seed_all(1)
    expected = CNN(1, 10, (6, 8), dropout=0.4, dims=1, kernel=5)
    states_close(stacked.unstack(3, CNN(1, 10, (6, 8), dropout=0.4, dims=1, kernel=5)),
                 expected, 0)
    with pytest.raises(ValueError, match="dropout=0 has no Dropout layer"):
        StackedModel.from_grid(lambda dropout: CNN(1, 10, (6, 8), dropout=dropout, dims=1),
                               Grid(dropout=[0.0, 0.4], seed=[0]))


@pytest.mark.parametrize("batchnorm", [False, True])
def test_sam_on_stacked_cnns_matches_sam_written_by_hand(small_mnist1d, batchnorm):
    from test_sweep import sam_by_hand

    cfg = dataclasses.replace(CFG, epochs=1, optimizer="sgd", momentum=0.9, lr=0.05)
    stacked = StackedModel(cnns(2, batchnorm))
    sweep_fit(stacked, small_mnist1d, cfg, rho=[0.0, 0.1])
    for k, rho in enumerate([0.0, 0.1]):
        model = sam_by_hand(cnns(2, batchnorm)[k], small_mnist1d, cfg, rho)
        states_close(stacked.unstack(k, cnns(1, batchnorm)[0]), model, 1e-3)
