"""A sweep of K models must give what K separate fits give."""
import dataclasses
import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from labkit.data import Dataset, regression
from labkit.models import MLP
from labkit.runtime import seed_all
from labkit.stacked import CrossEntropy
from labkit.sweep import StackedMLP, sweep_fit
from labkit.train import FitConfig, fit

CFG = FitConfig(epochs=4, batch_size=50, lr=1e-2, progress=False)


def mlps(k, hidden=(32, 32), batchnorm=False, out=10, inp=40):
    models = []
    for s in range(k):
        torch.manual_seed(s)
        models.append(MLP(inp, list(hidden), out, batchnorm=batchnorm))
    return models


@pytest.mark.parametrize("optimizer,rtol", [("sgd", 1e-4), ("adam", 5e-3), ("adamw", 5e-3)])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_sweep_matches_separate_fits(small_mnist1d, optimizer, rtol, batchnorm):
    cfg = dataclasses.replace(CFG, optimizer=optimizer, lr=1e-2 if optimizer == "sgd" else 3e-3)
    decays, lrs = [0.0, 1e-3, 3e-2], [cfg.lr, cfg.lr / 2, cfg.lr * 2]
    stacked = StackedMLP(mlps(3, batchnorm=batchnorm))
    sh = sweep_fit(stacked, small_mnist1d, cfg, lr=lrs, weight_decay=decays)
    for k, model in enumerate(mlps(3, batchnorm=batchnorm)):
        h = fit(model, small_mnist1d, dataclasses.replace(cfg, lr=lrs[k], weight_decay=decays[k]))
        np.testing.assert_allclose(sh.val_loss[:, k], h.val_loss, rtol=rtol)
        np.testing.assert_allclose(sh.train_loss[:, k], h.train_loss, rtol=rtol)
        back = stacked.unstack(k, mlps(1, batchnorm=batchnorm)[0])
        for p, q in zip(back.state_dict().values(), model.state_dict().values()):
            if p.is_floating_point():
                torch.testing.assert_close(p, q, rtol=50 * rtol, atol=50 * rtol)


def test_per_model_weight_decay_orders_weight_norms(small_mnist1d):
    stacked = StackedMLP(mlps(4))
    sweep_fit(stacked, small_mnist1d, dataclasses.replace(CFG, optimizer="adamw"),
              weight_decay=[0.0, 1.0, 5.0, 20.0])
    norms = sum(w.detach().pow(2).sum((1, 2)) for w in stacked.weights)
    assert torch.all(norms[1:] < norms[:-1])


def test_dropout_masks_differ_per_model_and_keep_the_mean():
    same = mlps(1, hidden=(256,))[0]
    stacked = StackedMLP([same] * 3, dropout=[0.5, 0.5, 0.0])
    x = torch.randn(8, 40)
    stacked.train()
    out = stacked(x)
    assert not torch.allclose(out[0], out[1])  # same weights, same p, different masks
    torch.testing.assert_close(out[2], same.eval()(x), rtol=1e-5, atol=1e-5)  # p = 0: no mask
    stacked.eval()
    expected = stacked(x)
    assert torch.allclose(expected[0], expected[1])  # no dropout at evaluation
    # inverted dropout: the average training output equals the evaluation output
    stacked.train()
    mean = torch.stack([stacked(x) for _ in range(2000)]).mean(0)
    torch.testing.assert_close(mean[0], expected[0], rtol=0, atol=0.02)


def test_batchnorm_buffers_are_per_model(small_mnist1d):
    stacked = StackedMLP(mlps(2, batchnorm=True))
    index = torch.stack([torch.arange(0, 300), torch.arange(300, 600)])
    sweep_fit(stacked, small_mnist1d, CFG, train_index=index)
    assert not torch.allclose(stacked.mean0[0], stacked.mean0[1])


def test_train_index_equals_fitting_on_that_subset(small_mnist1d):
    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, 600, (2, 400), generator=g)
    stacked = StackedMLP(mlps(2))
    cfg = dataclasses.replace(CFG, optimizer="sgd")
    sh = sweep_fit(stacked, small_mnist1d, cfg, train_index=index)
    for k, model in enumerate(mlps(2)):
        d = small_mnist1d
        sub = Dataset(d.train.take(index[k]), d.val, d.test, d.num_classes)
        h = fit(model, sub, cfg)
        np.testing.assert_allclose(sh.val_loss[:, k], h.val_loss, rtol=1e-4)


def test_early_stopping_per_model_matches_fit():
    d = regression(n_train=20, n_val=100, n_test=10, seed=0, device="cpu")
    cfg = FitConfig(epochs=400, batch_size=20, lr=1e-2, optimizer="sgd", patience=20, progress=False)
    stacked = StackedMLP(mlps(2, hidden=(64, 64), out=1, inp=1))
    sh = sweep_fit(stacked, d, cfg)
    for k, model in enumerate(mlps(2, hidden=(64, 64), out=1, inp=1)):
        h = fit(model, d, cfg)
        assert sh.best_epoch[k] == h.best_epoch
        assert sh.best["val_loss"][k] == pytest.approx(h.best["val_loss"], rel=1e-4)
        back = stacked.unstack(k, mlps(1, hidden=(64, 64), out=1, inp=1)[0])
        torch.testing.assert_close(back(d.val.x), model(d.val.x), rtol=1e-3, atol=1e-4)


def test_augment_may_give_each_model_its_own_batch(small_mnist1d):
    # augment may return (K, N, d): model k trains on its own transformed batch,
    # exactly as a separate fit with that transformation would.
    scales = [1.0, -1.0, 0.5]
    per_model = torch.tensor(scales)[:, None, None]
    cfg = dataclasses.replace(CFG, optimizer="sgd", augment=lambda x, g: x.expand(3, -1, -1) * per_model)
    sh = sweep_fit(StackedMLP(mlps(3)), small_mnist1d, cfg)
    for k, model in enumerate(mlps(3)):
        h = fit(model, small_mnist1d, dataclasses.replace(cfg, augment=lambda x, g, c=scales[k]: x * c))
        np.testing.assert_allclose(sh.train_loss[:, k], h.train_loss, rtol=1e-4)
    assert not np.allclose(sh.train_loss[:, 0], sh.train_loss[:, 1])


def test_transform_gives_soft_targets_per_model(small_mnist1d):
    # transform may return (K, N, C) class probabilities: model k trains on its own
    # smoothed labels, as a separate fit with that smoothing (F.cross_entropy's) does.
    eps = [0.0, 0.1, 0.3]

    def smooth(y, e):
        return torch.nn.functional.one_hot(y, 10).float() * (1 - e) + e / 10

    per_model = lambda x, y, g: (x, torch.stack([smooth(y, e) for e in eps]))
    cfg = dataclasses.replace(CFG, optimizer="sgd", transform=per_model)
    sh = sweep_fit(StackedMLP(mlps(3)), small_mnist1d, cfg)
    for k, model in enumerate(mlps(3)):
        h = fit(model, small_mnist1d, dataclasses.replace(
            cfg, transform=lambda x, y, g, e=eps[k]: (x, smooth(y, e))))
        np.testing.assert_allclose(sh.train_loss[:, k], h.train_loss, rtol=1e-4)
    assert not np.allclose(sh.train_loss[:, 0], sh.train_loss[:, 2])


def test_soft_one_hot_targets_train_as_hard_labels(small_mnist1d):
    one_hot = lambda x, y, g: (x, torch.nn.functional.one_hot(y, 10).float())
    cfg = dataclasses.replace(CFG, optimizer="sgd")
    hard = fit(mlps(1)[0], small_mnist1d, cfg)
    soft = fit(mlps(1)[0], small_mnist1d, dataclasses.replace(cfg, transform=one_hot))
    np.testing.assert_allclose(soft.train_loss, hard.train_loss, rtol=1e-4)
    shared = sweep_fit(StackedMLP(mlps(2)), small_mnist1d, dataclasses.replace(cfg, transform=one_hot))
    np.testing.assert_allclose(shared.train_loss[:, 0], hard.train_loss, rtol=1e-4)


def test_from_seeds_stacks_the_models_a_seeded_loop_builds():
    stacked = StackedMLP.from_seeds(lambda: MLP(40, [32, 32], 10), [3, 0, 3], dropout=[0.0, 0.1, 0.2])
    for j, seed in enumerate([3, 0, 3]):
        seed_all(seed)
        expected = MLP(40, [32, 32], 10)
        back = stacked.unstack(j, MLP(40, [32, 32], 10))
        for p, q in zip(back.parameters(), expected.parameters()):
            assert torch.equal(p, q)
    assert stacked.p.tolist() == pytest.approx([0.0, 0.1, 0.2])


def test_grid_shapes_the_history_and_sel_picks_by_name(small_mnist1d):
    from labkit.sweep import Grid

    grid = Grid(weight_decay=[0.0, 1e-2], seed=[0, 1, 2])
    assert grid["weight_decay"] == [0.0] * 3 + [1e-2] * 3 and grid["seed"] == [0, 1, 2] * 2
    assert grid.index(weight_decay=1e-2) == [3, 4, 5] and grid.index(weight_decay=0.0, seed=2) == [2]
    assert grid.point(4) == {"weight_decay": 1e-2, "seed": 1}
    with pytest.raises(KeyError, match="not a point"):
        grid.index(seed=7)
    stack = StackedMLP.from_grid(lambda: MLP(40, [16], 10), grid)
    h = sweep_fit(stack, small_mnist1d, dataclasses.replace(CFG, epochs=2), grid=grid)
    assert h.val_acc.shape == (2, 2, 3) and h.best_epoch.shape == (2, 3)
    flat = sweep_fit(StackedMLP.from_grid(lambda: MLP(40, [16], 10), grid), small_mnist1d,
                     dataclasses.replace(CFG, epochs=2), weight_decay=grid["weight_decay"])
    np.testing.assert_array_equal(h.val_loss.reshape(2, 6), flat.val_loss)
    one = h.sel(weight_decay=1e-2)
    np.testing.assert_array_equal(one.val_loss, flat.val_loss[:, 3:])
    assert one.last["val_acc"].shape == (3,) and one.grid.axes == {"seed": [0, 1, 2]}
    np.testing.assert_array_equal(h.best["val_loss"][1], one.best["val_loss"])
    with pytest.raises(KeyError, match="not among"):
        h.sel(weight_decay=0.5)
    with pytest.raises(ValueError, match="K=6"):
        sweep_fit(stack, small_mnist1d, CFG, grid=Grid(seed=[0, 1]))


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_fused_and_plain_optimizer_steps_agree(small_mnist1d, optimizer, shared, monkeypatch):
    # the fused kernels (CPU, CUDA, MPS) and the tensor-operation fallback (other devices);
    # the fused kernels run on groups of rows, or on the whole buffer when every model
    # shares one learning rate and decay
    import labkit.optim as optim_module

    cfg = dataclasses.replace(CFG, optimizer=optimizer, epochs=2)
    lr, wd = ([3e-3] * 3, [1e-2] * 3) if shared else ([3e-3, 1e-3, 3e-3], [0.0, 1e-2, 1e-2])
    shapes = []
    fused_update = optim_module.fused_update
    monkeypatch.setattr(optim_module, "fused_update", lambda config, params, *a: (
        shapes.append(tuple(params[0].shape)), fused_update(config, params, *a)))
    runs = []
    for fused in (True, False):
        monkeypatch.setattr(optim_module, "FUSED", fused)
        stacked = StackedMLP(mlps(3))
        runs.append((sweep_fit(stacked, small_mnist1d, cfg, lr=lr, weight_decay=wd), stacked))
    # one rate: the whole (K, P) buffer; several: each group's rows
    assert shapes and all(len(s) == (2 if shared else 1) for s in shapes)
    (a, ma), (b, mb) = runs
    np.testing.assert_allclose(a.val_loss, b.val_loss, rtol=1e-4)
    for p, q in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("width_in,width_out", [(40, 10), (6, 5)])
def test_stacked_affine_matches_baddbmm_and_its_gradients(shared, width_in, width_out):
    """``stacked.affine`` computes a narrow layer (40 -> 10 here) transposed, with its
    own backward: the same values and gradients as ``baddbmm`` and autograd, to
    rounding, and (in float64) gradients that pass gradcheck and gradgradcheck."""
    from labkit.stacked import _narrow, affine
    assert _narrow(torch.empty(3, width_in, width_out)) == ((width_in, width_out) == (40, 10))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, width_in, generator=g)
    h = x.expand(2, -1, -1) if shared else torch.randn(2, 3, width_in, generator=g,
                                                      requires_grad=True)
    w = torch.randn(2, width_in, width_out, generator=g, requires_grad=True)
    b = torch.randn(2, 1, width_out, generator=g, requires_grad=True)
    up = torch.randn(2, 3, width_out, generator=g)
    out, ref = affine(h, w, b), torch.baddbmm(b, h, w)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    inputs = [t for t in (h, w, b) if t.requires_grad]
    got = torch.autograd.grad(out, inputs, up)
    want = torch.autograd.grad(ref, inputs, up)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    double = [t.detach().double().requires_grad_(t.requires_grad) for t in (h, w, b)]
    assert torch.autograd.gradcheck(affine, double)
    assert torch.autograd.gradgradcheck(affine, double)


def test_sweep_cross_entropy_matches_torch_and_its_gradient():
    """The sweep's cross-entropy, with its gradient written out, against
    ``F.cross_entropy`` per model: values and gradients to rounding, also for
    scores far from zero, and gradcheck in float64."""
    from torch.nn import functional as F

    from labkit.sweep import _losses
    g = torch.Generator().manual_seed(0)
    for scale in (1.0, 1e3):
        out = (scale * torch.randn(3, 7, 5, generator=g)).requires_grad_()
        y = torch.randint(0, 5, (7,), generator=g)
        got = _losses(out, y, F.cross_entropy)
        want = torch.stack([F.cross_entropy(o, y) for o in out])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        up = torch.rand(3, generator=g)
        torch.testing.assert_close(torch.autograd.grad(got, out, up)[0],
                                   torch.autograd.grad(want, out, up)[0], rtol=1e-5, atol=1e-6)
    per_model = torch.randint(0, 5, (3, 7), generator=g)
    double = out.detach().double().div(1e3).requires_grad_()
    assert torch.autograd.gradcheck(lambda o: _losses(o, per_model, F.cross_entropy), [double])


@pytest.mark.parametrize("mask", [False, True], ids=["threshold_backward", "mask"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_written_out_backward_trains_bit_for_bit_as_autograd(small_mnist1d, optimizer,
                                                             mask, monkeypatch):
    """A stack without batch norm or penalty, with hard labels, trains with
    ``StackedMLP.cross_entropy_grads``, its backward pass written out; the weights and
    curves are identical to autograd's, with a narrow class layer (32 -> 10) and a
    wide one (8 -> 64), a batch per model (augment) and models on their own data, with
    and without dropout (each model its own rate, one of them 0); with ReLU's backward
    as PyTorch's kernel or as a multiply by the mask (the portable kernels' choice)."""
    import labkit.stacked as stacked_module
    monkeypatch.setattr(stacked_module, "MASK_RELU_BACKWARD", mask)
    calls = []  # the scratch memory each step was given: one dict for a whole run
    written = StackedMLP.cross_entropy_grads
    monkeypatch.setattr(StackedMLP, "cross_entropy_grads",
                        lambda self, *a: (calls.append(a[3]), written(self, *a))[1])
    scales = torch.tensor([1.0, -1.0, 0.5])[:, None, None]
    own = dataclasses.replace(CFG, optimizer=optimizer, epochs=2,
                              augment=lambda x, g: x.expand(3, -1, -1) * scales)
    index = torch.randint(0, 600, (3, 500), generator=torch.Generator().manual_seed(0))
    cases = {  # each model its own batch, data and rate; or one shared batch and rate
        "own": (own, dict(lr=[own.lr, own.lr / 2, own.lr * 2], train_index=index)),
        "shared": (dataclasses.replace(own, augment=None), {}),
    }
    runs = {}
    for written_out in (True, False):
        monkeypatch.setattr(stacked_module, "WRITTEN_OUT", written_out)
        for hidden in [(32, 32), (8,)]:
            for case, (cfg, kwargs) in cases.items():
                for dropout in (0.0, [0.5, 0.0, 0.2]):
                    stacked = StackedMLP(mlps(3, hidden=hidden,
                                              out=10 if hidden[-1] == 32 else 64),
                                         dropout=dropout)
                    seed_all(1)  # the dropout masks' draws
                    h = sweep_fit(stacked, small_mnist1d, cfg, **kwargs)
                    runs[written_out, hidden, case, bool(dropout)] = \
                        h, [p.detach().clone() for p in stacked.parameters()]
                    # every run, dropout or not, takes the path under test
                    assert bool(calls) == written_out, (hidden, case, dropout)
                    assert all(c is calls[0] for c in calls) and (not calls or calls[0])
                    calls.clear()
    for key in [(h, c, d) for h in [(32, 32), (8,)] for c in cases for d in (False, True)]:
        (a, pa), (b, pb) = runs[(True, *key)], runs[(False, *key)]
        np.testing.assert_array_equal(a.train_loss, b.train_loss)
        np.testing.assert_array_equal(a.val_acc, b.val_acc)
        for p, q in zip(pa, pb):
            assert torch.equal(p, q)


@pytest.mark.parametrize("training", [True, False], ids=["train mode", "eval mode"])
def test_written_out_gradients_equal_autograds_with_dropout(training):
    """``cross_entropy_grads`` against autograd on one batch of a dropout stack, bit for
    bit: in training mode with the same masks (each model its own rate, one of them
    0), in eval mode without dropout."""
    stacked = StackedMLP(mlps(3), dropout=[0.5, 0.0, 0.2]).train(training)
    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
    params = list(stacked.parameters())
    ours = [torch.zeros_like(p) for p in params]
    seed_all(2)
    stacked.cross_entropy_grads(x, y, ours)
    seed_all(2)  # the same masks
    loss = CrossEntropy.apply(stacked(x), y.expand(3, -1))
    for a, b in zip(ours, torch.autograd.grad(loss.sum(), params)):
        assert torch.equal(a, b)
    seed_all(3)  # other masks: other gradients in training mode, the same in eval mode
    again = [torch.zeros_like(p) for p in params]
    stacked.cross_entropy_grads(x, y, again)
    assert all(torch.equal(a, b) for a, b in zip(ours, again)) != training


def test_written_out_gradients_reuse_their_scratch_memory():
    """With a ``scratch`` dict (``sweep_fit`` keeps one for the whole run) the weight
    gradients are computed in the same memory every step: the same numbers as
    without it, and no new tensor after the first step, unless the dtype changes."""
    stacked = StackedMLP(mlps(3, hidden=(32, 32)))
    params = list(stacked.parameters())
    scratch, seen = {}, []
    for step in range(3):
        x = torch.randn(16 + step, 40, generator=torch.Generator().manual_seed(step))
        y = torch.randint(0, 10, (16 + step,), generator=torch.Generator().manual_seed(9))
        fresh, kept = ([torch.zeros_like(p) for p in params] for _ in range(2))
        stacked.cross_entropy_grads(x, y, fresh)
        stacked.cross_entropy_grads(x, y, kept, scratch)
        assert all(torch.equal(a, b) for a, b in zip(fresh, kept))
        seen.append({k: t.data_ptr() for k, t in scratch.items()})
    assert seen[0] and seen[0] == seen[1] == seen[2]  # hidden layers' memory, kept
    stacked.double()
    stacked.cross_entropy_grads(x.double(), y, [torch.zeros_like(p) for p in
                                                stacked.parameters()], scratch)
    assert all(t.dtype == torch.float64 for t in scratch.values())
    stacked.float()  # mixed precision: the products in bfloat16, as without scratch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fresh, kept = ([torch.zeros_like(p) for p in params] for _ in range(2))
        stacked.cross_entropy_grads(x, y, fresh)
        stacked.cross_entropy_grads(x, y, kept, scratch)
    assert all(torch.equal(a, b) for a, b in zip(fresh, kept))


def test_written_out_backward_only_where_autograd_would_agree(small_mnist1d):
    """Frozen parameters, forward hooks, parametrizations, subclasses and penalties
    take autograd; a wrong input width gives the same clear error either way."""
    import torch.nn.functional as F
    from torch.nn.utils import parametrize

    from labkit.sweep import _written_out

    def ok(model, config=CFG):
        return _written_out(model, config, F.cross_entropy, list(model.parameters()))

    assert ok(StackedMLP(mlps(2)))
    assert not ok(StackedMLP(mlps(2)), dataclasses.replace(CFG, penalty=lambda m: 0.0))
    assert ok(StackedMLP(mlps(2), dropout=0.5))  # dropout is written out too
    assert not ok(StackedMLP(mlps(2, batchnorm=True)))
    frozen = StackedMLP(mlps(2))
    frozen.weights[0].requires_grad_(False)
    assert not ok(frozen)
    hooked = StackedMLP(mlps(2))
    hooked.register_forward_pre_hook(lambda m, args: None)
    assert not ok(hooked)

    class Own(StackedMLP):
        def forward(self, x, scratch=None):
            return super().forward(x, scratch)

    assert not ok(Own(mlps(2)))
    tied = StackedMLP(mlps(2))
    parametrize.register_parametrization(tied.weights, "0", torch.nn.Identity())
    assert not ok(tied)
    with pytest.raises(ValueError, match="expects 39 features"):
        sweep_fit(StackedMLP(mlps(2, inp=39)), small_mnist1d, CFG)


def test_second_derivatives_through_the_sweep_loss_and_torch_func():
    """A gradient penalty differentiates the loss's backward: the sweep's cross-entropy
    and the narrow layer give F.cross_entropy's second derivatives; torch.func.grad
    runs through the stack."""
    from torch.nn import functional as F

    from labkit.sweep import _losses
    torch.manual_seed(0)
    stacked = StackedMLP(mlps(2, hidden=(32,))).double()
    x, y = torch.randn(5, 40, dtype=torch.float64), torch.randint(0, 10, (5,))
    params = list(stacked.parameters())

    def penalty_grads(loss_of):
        g = torch.autograd.grad(loss_of(stacked(x)).sum(), params, create_graph=True)
        return torch.autograd.grad(sum(t.pow(2).sum() for t in g), params)

    ours = penalty_grads(lambda out: _losses(out, y, F.cross_entropy))
    ref = penalty_grads(lambda out: torch.stack([F.cross_entropy(o, y) for o in out]))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    names = [n for n, _ in stacked.named_parameters()]
    state = {n: p.detach() for n, p in stacked.named_parameters()}
    loss = lambda st: torch.func.functional_call(stacked, st, (x,)).logsumexp(-1).sum()  # noqa: E731
    grads = torch.func.grad(loss)(state)
    want = torch.autograd.grad(stacked(x).logsumexp(-1).sum(), params)
    for n, b in zip(names, want):
        torch.testing.assert_close(grads[n], b)


def test_a_stack_keeps_its_dropout_rates_on_the_models_device():
    # a stack of GPU models must not need .to(): found on an H200, where the rates stayed
    # on the CPU; the meta device stands in for the GPU here
    models = [MLP(4, [3], 2).to("meta") for _ in range(2)]
    stack = StackedMLP(models, dropout=[0.1, 0.2])
    assert {t.device.type for t in [*stack.parameters(), *stack.buffers()]} == {"meta"}


def test_relu_backward_is_a_mask_multiply_only_on_portable_kernels():
    """The portable kernels (ATEN_CPU_CAPABILITY=default) take the mask multiply; any
    other kernels keep threshold_backward (checked in fresh processes, each against its
    own kernels, so the test does not depend on this process's environment)."""
    import subprocess
    import sys
    code = ("import torch, labkit.stacked as s; print(s.MASK_RELU_BACKWARD, "
            "torch.backends.cpu.get_cpu_capability() == 'DEFAULT')")
    for capability in ["default", None]:
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        assert out[0] == out[1], (capability, out)  # the flag follows the kernels
        assert capability is None or out == ["True", "True"], (capability, out)


def sam_by_hand(model, data, cfg, rho):
    """SAM on one model, written plainly: the gradient g at w, the gradient again at
    w + rho g / |g|, then torch.optim.SGD's step from w with the second gradient; the
    second pass leaves the batch-norm statistics as the first left them."""
    from labkit.runtime import generator

    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    g, n = generator(cfg.seed), len(data.train)
    params = list(model.parameters())
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=g)
        for i in range(0, n, cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            x, y = data.train.x[idx], data.train.y[idx]
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
            at = [p.detach().clone() for p in params]
            stats = [b.clone() for b in model.buffers()]
            norm = torch.cat([gr.flatten() for gr in grads]).norm()
            with torch.no_grad():
                for p, gr in zip(params, grads):
                    p.add_(gr * rho / norm)
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
            with torch.no_grad():
                for p, a, gr in zip(params, at, grads):
                    p.copy_(a)
                    p.grad = gr
                for b, s in zip(model.buffers(), stats):
                    b.copy_(s)
            opt.step()
    return model


@pytest.mark.parametrize("batchnorm", [False, True])
def test_sam_matches_sam_written_by_hand(small_mnist1d, batchnorm):
    cfg = dataclasses.replace(CFG, epochs=2, optimizer="sgd", momentum=0.9, lr=0.05)
    rhos = [0.0, 0.05, 0.5]
    stacked = StackedMLP(mlps(3, batchnorm=batchnorm))
    sweep_fit(stacked, small_mnist1d, cfg, rho=rhos)
    plain = StackedMLP(mlps(3, batchnorm=batchnorm))
    sweep_fit(plain, small_mnist1d, cfg)
    x = small_mnist1d.val.x
    stacked.eval(), plain.eval()
    # rho 0: the plain gradient, taken twice, so the plain sweep's weights exactly
    assert torch.equal(stacked(x)[0], plain(x)[0])
    for k, rho in enumerate(rhos):
        model = sam_by_hand(mlps(3, batchnorm=batchnorm)[k], small_mnist1d, cfg, rho).eval()
        back = stacked.unstack(k, mlps(1, batchnorm=batchnorm)[0]).eval()
        for p, q in zip(back.state_dict().values(), model.state_dict().values()):
            if p.is_floating_point():
                torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)
    # and SAM moved the weights elsewhere than plain SGD: the test can fail
    assert not torch.allclose(stacked(x)[2], plain(x)[2], atol=1e-3)


def test_rho_must_be_non_negative(small_mnist1d):
    with pytest.raises(ValueError, match="rho"):
        sweep_fit(StackedMLP(mlps(2)), small_mnist1d, CFG, rho=[0.1, -0.1])


@pytest.mark.parametrize("curves", [(), ("val",), ("train",)])
def test_curves_left_out_read_nan_and_change_no_weight(small_mnist1d, curves):
    """A split left out of ``FitConfig.curves`` is not evaluated: its curves read NaN,
    the others are a full run's, and the weights are the same bit for bit."""
    cfg = dataclasses.replace(CFG, epochs=3)
    full, part = StackedMLP(mlps(3)), StackedMLP(mlps(3))
    h = sweep_fit(full, small_mnist1d, cfg)
    p = sweep_fit(part, small_mnist1d, dataclasses.replace(cfg, curves=curves))
    for a, b in zip(full.parameters(), part.parameters()):
        assert torch.equal(a, b)
    for split in ("train", "val"):
        for key in (f"{split}_loss", f"{split}_acc"):
            if split in curves:
                np.testing.assert_array_equal(getattr(p, key), getattr(h, key))
            else:
                assert np.isnan(getattr(p, key)).all(), key
    if "val" in curves:
        np.testing.assert_array_equal(p.best_epoch, h.best_epoch)
    else:  # nothing watched: the last epoch stands as the best
        assert (p.best_epoch == cfg.epochs - 1).all()


def test_curves_at_the_last_epoch_alone(small_mnist1d):
    """``curves_at="last epoch"``: the same weights bit for bit, the last epoch's values
    a full run's, NaN before it, and the last epoch as the best; in ``fit`` too."""
    cfg = dataclasses.replace(CFG, epochs=3)
    last = dataclasses.replace(cfg, curves_at="last epoch")
    full, part = StackedMLP(mlps(3)), StackedMLP(mlps(3))
    h, p = sweep_fit(full, small_mnist1d, cfg), sweep_fit(part, small_mnist1d, last)
    for a, b in zip(full.parameters(), part.parameters()):
        assert torch.equal(a, b)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        np.testing.assert_array_equal(p.last[key], h.last[key])
        assert np.isnan(getattr(p, key)[:-1]).all(), key
    assert (p.best_epoch == cfg.epochs - 1).all()
    one, other = mlps(1)[0], mlps(1)[0]  # the same initial weights
    a, b = fit(one, small_mnist1d, cfg), fit(other, small_mnist1d, last)
    assert a.last == b.last and b.best_epoch == cfg.epochs - 1
    assert np.isnan(b.train_loss[:-1]).all() and np.isnan(b.val_acc[:-1]).all()


def test_early_stopping_on_val_curves_alone_matches_the_full_run():
    d = regression(n_train=20, n_val=100, n_test=10, seed=0, device="cpu")
    cfg = FitConfig(epochs=300, batch_size=20, lr=1e-2, optimizer="sgd", patience=20,
                    progress=False)
    full = StackedMLP(mlps(2, hidden=(64, 64), out=1, inp=1))
    part = StackedMLP(mlps(2, hidden=(64, 64), out=1, inp=1))
    h = sweep_fit(full, d, cfg)
    p = sweep_fit(part, d, dataclasses.replace(cfg, curves=("val",)))
    assert len(h.val_loss) < cfg.epochs  # it did stop early
    np.testing.assert_array_equal(p.best_epoch, h.best_epoch)
    np.testing.assert_array_equal(p.val_loss, h.val_loss)
    for a, b in zip(full.parameters(), part.parameters()):
        assert torch.equal(a, b)
    single = mlps(1, hidden=(64, 64), out=1, inp=1)[0]
    one = fit(single, d, dataclasses.replace(cfg, curves=("val",)))
    assert np.isnan(one.train_loss).all() and one.best_epoch == h.best_epoch[0]
