"""labkit.ledger: recipes train as the plain loop would, and ensembles average members."""
import dataclasses

import numpy as np
import pytest
import torch

from labkit.ledger import Recipe, WeightAverages, random_shift, train_recipes
from labkit.models import MLP
from labkit.runtime import generator
from labkit.sweep import StackedMLP, sweep_fit
from labkit.train import FitConfig

CFG = FitConfig(epochs=3, batch_size=50, lr=1e-2, optimizer="adamw", progress=False)


def build(batchnorm, dropout, seeds):
    return StackedMLP.from_seeds(lambda: MLP(40, [16], 10, batchnorm=batchnorm), seeds,
                                 dropout=dropout)


def test_baseline_recipe_is_a_plain_sweep_and_ensembles_average_members(small_mnist1d):
    d = small_mnist1d
    runs = train_recipes([Recipe(), Recipe(members=2)], build, d, CFG, n_seeds=2)
    plain = build(False, 0.0, [0, 1000, 1, 1001])
    sweep_fit(plain, d, dataclasses.replace(CFG, monitor="val_acc"))
    with torch.no_grad():
        probs = plain.eval()(d.val.x).softmax(-1)
    acc = (probs.argmax(-1) == d.val.y).float().mean(-1).numpy()
    np.testing.assert_allclose(runs.val_acc[0], acc[[0, 2]], atol=1e-6)
    ensemble = probs.reshape(2, 2, *probs.shape[1:]).mean(1)
    torch.testing.assert_close(runs.probabilities(d.val, 1), ensemble, rtol=1e-4, atol=1e-5)
    assert runs.val_acc.shape == (2, 2)


def test_pruning_keeps_the_mask_and_regularisers_change_training(small_mnist1d):
    recipes = [Recipe(), Recipe(prune=0.8), Recipe(shift=3, noise=0.2),
               Recipe(smoothing=0.1, mixup=0.4), Recipe(l1=1e-3, weight_decay=0.1)]
    runs = train_recipes(recipes, build, small_mnist1d, CFG, n_seeds=2)
    model, rows = runs.parts[1]
    w = torch.cat([w.detach()[rows].flatten(1) for w in model.weights], 1)
    zeros = (w == 0).float().mean(1)
    assert torch.all((zeros - 0.8).abs() < 0.01), zeros
    assert runs.parts[0][0] is not model  # a pruned recipe trains in its own stack
    base = runs.val_acc[0]
    for i in range(1, len(recipes)):
        assert not np.allclose(runs.val_acc[i], base), recipes[i]


def test_recipe_labels_combinations_and_bad_strengths():
    r = Recipe(dropout=0.2).plus(Recipe(shift=4))
    assert r == Recipe(dropout=0.2, shift=4)
    assert r.label() == "dropout=0.2, shift=4" and Recipe().label() == "baseline"
    for bad in (dict(members=0), dict(prune=1.0), dict(dropout=-0.1), dict(smoothing=1),
                dict(ema=1.0), dict(swa=1.5), dict(sam=-0.1), dict(ema=0.9, swa=0.5)):
        with pytest.raises(ValueError, match="Recipe"):
            Recipe(**bad)


def test_random_shift_rolls_each_row_within_its_bound():
    x = torch.arange(10.0).expand(3, 200, 10)
    out = random_shift(x, generator(0), torch.tensor([0, 1, 3])[:, None])
    offsets = (x[..., :1] - out[..., :1]) % 10  # how far each row moved
    assert torch.equal(out[0], x[0])
    assert set(offsets[1].flatten().tolist()) == {0.0, 1.0, 9.0}
    assert set(offsets[2].flatten().tolist()) == {0.0, 1.0, 2.0, 3.0, 7.0, 8.0, 9.0}


def test_every_stack_sees_the_same_batch_order(small_mnist1d):
    # the regularisers draw from their own generator, so a baseline trained beside
    # shifted, noisy and mixed recipes is the baseline trained alone
    alone = train_recipes([Recipe()], build, small_mnist1d, CFG, n_seeds=2)
    beside = train_recipes([Recipe(), Recipe(shift=3, noise=0.1), Recipe(mixup=0.4)],
                           build, small_mnist1d, CFG, n_seeds=2)
    np.testing.assert_array_equal(beside.val_acc[0], alone.val_acc[0])


def test_early_stopping_watches_the_stop_split(small_mnist1d, monkeypatch):
    import labkit.ledger as ledger

    seen = []
    real = ledger.sweep_fit
    monkeypatch.setattr(ledger, "sweep_fit", lambda model, data, cfg, **kw: (
        seen.append((cfg.patience, data.val)), real(model, data, cfg, **kw))[1])
    stop = small_mnist1d.test
    runs = train_recipes([Recipe(), Recipe(patience=2)], build, small_mnist1d, CFG,
                         n_seeds=1, stop=stop)
    assert [(p, v is stop) for p, v in seen] == [(None, False), (2, True)]
    assert runs.val_acc.shape == (2, 1)  # both scored on data.val


def test_l1_and_pruning_need_weight_matrices(small_mnist1d):
    from labkit.vmapped import StackedModel

    def cnn(batchnorm, dropout, seeds):
        from labkit.models import CNN
        return StackedModel.from_seeds(lambda: CNN(1, 10, (4,), dims=1), seeds)

    with pytest.raises(ValueError, match="weight matrices"):
        train_recipes([Recipe(l1=1e-3)], cnn, small_mnist1d, CFG, n_seeds=1)


def test_hooked_recipes_stack_apart_and_correct_gives_each_examples_result(small_mnist1d):
    d = small_mnist1d
    alone = train_recipes([Recipe(weight_decay=0.1)], build, d, CFG, n_seeds=2)
    mixed = train_recipes([Recipe(shift=2), Recipe(weight_decay=0.1), Recipe(dropout=0.2)],
                          build, d, CFG, n_seeds=2)
    # the shifted and dropout recipes stack apart from the one that needs no hook ...
    assert len({id(model) for model, _ in mixed.parts.values()}) == 3
    # ... which trains as it does alone (check: same weights, batches and arithmetic)
    np.testing.assert_array_equal(mixed.val_acc[1], alone.val_acc[0])
    right = mixed.correct(d.test)
    assert right.shape == (3, 2, len(d.test)) and right.dtype == bool
    np.testing.assert_allclose(right.mean(-1), mixed.accuracy(d.test), atol=1e-6)


def test_weight_averages_are_an_ema_and_an_equal_average_with_batchnorm_recomputed(
        small_mnist1d):
    from torch.optim.swa_utils import AveragedModel, update_bn

    d, epochs, batch = small_mnist1d, 3, 100
    steps = len(d.train) // batch
    model = build(True, 0.0, [0, 1, 2])
    averages = WeightAverages(model, [0.9, 0.0, 0.0], [0.0, 0.5, 0.0], steps, epochs)
    seen = []  # every step's weights, per parameter

    def after_step(model, lr):
        averages(model, lr)
        seen.append([p.detach().clone() for p in model.parameters()])
    sweep_fit(model, d, dataclasses.replace(CFG, epochs=epochs, batch_size=batch,
                                            after_step=after_step))
    last = [p.detach().clone() for p in model.parameters()]
    kept = [b.clone() for b in model.buffers()]
    averages.load_into(model, d.train.x, batch)
    ema = seen[0]
    for w in seen[1:]:
        ema = [0.9 * a + 0.1 * b for a, b in zip(ema, w)]
    ends = [seen[steps * (e + 1) - 1] for e in range(epochs)][-2:]  # round(0.5 * 3) = 2
    swa = [(a + b) / 2 for a, b in zip(*ends)]
    for p, e, s, w in zip(model.parameters(), ema, swa, last):
        torch.testing.assert_close(p[0], e[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(p[1], s[1], rtol=1e-5, atol=1e-6)
        assert torch.equal(p[2], w[2])  # not averaged: its own weights and statistics
    for b, k in zip(model.buffers(), kept):
        if b.shape[:1] == (3,) and b.ndim == 3:
            assert torch.equal(b[2], k[2]) and not torch.equal(b[1], k[1])
    # the recomputed statistics are torch's update_bn on the averaged weights
    net = AveragedModel(MLP(40, [16], 10, batchnorm=True))
    model.eval().unstack(1, net.module)
    update_bn([d.train.x[i:i + batch] for i in range(0, len(d.train), batch)], net)
    bn = next(m for m in net.module if isinstance(m, torch.nn.BatchNorm1d))
    torch.testing.assert_close(model.mean0[1, 0], bn.running_mean)
    torch.testing.assert_close(model.var0[1, 0], bn.running_var)


def test_a_model_at_rate_zero_is_averaged_no_more():
    model = build(False, 0.0, [0, 1])
    averages = WeightAverages(model, [0.5, 0.5], [0.0, 0.0], steps_per_epoch=10, epochs=1)
    averages(model, torch.tensor([0.1, 0.0]))       # model 1 stopped before its first
    with torch.no_grad():
        before = [p.clone() for p in model.parameters()]
        for p in model.parameters():
            p.add_(1.0)
    averages(model, torch.tensor([0.1, 0.0]))
    averages.load_into(model, None, 10)
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p[0], b[0] + 0.5)  # (w + (w + 1)) / 2
        assert torch.equal(p[1], b[1] + 1.0)        # never averaged: its own weights


def test_sam_and_averaging_recipes_train_in_stacks_of_their_own(small_mnist1d):
    recipes = [Recipe(), Recipe(sam=0.05), Recipe(ema=0.9), Recipe(swa=0.5)]
    runs = train_recipes(recipes, build, small_mnist1d, CFG, n_seeds=2)
    stacks = [runs.parts[i][0] for i in range(len(recipes))]
    assert stacks[0] is not stacks[1] and stacks[1] is not stacks[2]
    assert stacks[2] is stacks[3]
    for i in range(1, len(recipes)):
        assert not np.allclose(runs.val_acc[i], runs.val_acc[0]), recipes[i]
