"""Sweeps: K variants of one model trained at once, one model per point of a ``Grid``.

Each model keeps its own hyperparameters (learning rate, weight decay,
dropout rate), its own dropout masks, its own batch-norm statistics and,
optionally, its own resampled training set. ``labkit.stacked`` holds the
stacked MLP, ``labkit.vmapped`` the stacked model of any architecture (a CNN,
say), ``labkit.optim`` their optimizer and ``labkit.grid`` the grids and the
histories; ``sweep_fit`` is ``fit``'s loop for both.
"""
import math
import time
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from . import optim, stacked
from .grid import Grid, SweepHistory, history
from .optim import Optimizer, flatten
from .runtime import generator, no_host_sync
from .stacked import CrossEntropy, StackedMLP, _per_model
from .train import (DivergenceError, FitConfig, check_monitor, curves_now, loss_fn,
                    monitored_split, progress_bar, score)
from .vmapped import StackedModel

__all__ = ["Grid", "StackedMLP", "StackedModel", "SweepHistory", "sweep_fit"]

EVAL_ROWS = 4096  # examples x models per evaluation chunk


def _own_batch(x, k, hook, e=1):
    """``x`` is a batch shared by all models (``e + 1`` axes, ``e`` per example) or one
    copy per model (``e + 2`` axes, K first)."""
    if x.ndim == e + 2 and x.shape[0] != k:
        raise ValueError(f"{hook} returned shape {tuple(x.shape)}: a batch with one copy "
                         f"per model must have K={k} first, (K, N, *example)")
    return x


def _losses(out, y, loss):
    """Per-model mean loss: out (K, N, C|1); y (N,) shared or (K, N), or class
    probabilities (N, C) shared or (K, N, C)."""
    k, n = out.shape[:2]
    if loss is F.cross_entropy and y.is_floating_point():  # soft targets
        y = y.expand(k, *y.shape) if y.ndim == 2 else y
        # -sum_c y_c log softmax(out)_c = logsumexp(out) sum_c y_c - sum_c y_c out_c
        return (torch.logsumexp(out, -1) * y.sum(-1) - (y * out).sum(-1)).mean(1)
    if y.ndim == (1 if loss is F.cross_entropy else 2):  # shared by all models
        y = y.expand(k, *y.shape)
    if loss is F.cross_entropy:
        return CrossEntropy.apply(out, y)
    return F.mse_loss(out, y.expand_as(out), reduction="none").reshape(k, -1).mean(1)


def _forward(model, x, e, scratch=None):
    """The K models' outputs; ``x`` has ``e`` axes per example, K first if per model."""
    if isinstance(model, StackedModel):
        return model(x, per_model=x.ndim == e + 2)
    return model(x, scratch)


@torch.no_grad()
def _evaluate(model, x, y, loss, chunk=None, e=1):
    was = model.training
    model.eval()
    # chunks of about 4096 examples x models keep activations in cache and allocations small
    chunk = chunk or max(16, EVAL_ROWS // model.k)
    axis = x.ndim - e - 1  # the examples' axis: 0 shared, 1 one set per model
    n = x.shape[axis]
    scratch = {}  # the hidden layers' memory, reused from chunk to chunk
    out = torch.cat([_forward(model, x.narrow(axis, i, min(chunk, n - i)), e, scratch)
                     for i in range(0, n, chunk)], -2)
    model.train(was)
    if y.ndim == (1 if loss is F.cross_entropy else 2):
        y = y.expand(model.k, *y.shape)
    acc = (out.argmax(-1) == y).float().mean(1) if loss is F.cross_entropy else \
        torch.full((model.k,), math.nan, device=out.device)
    return _losses(out, y, loss), acc


def sweep_fit(model, data, config=FitConfig(), lr=None, weight_decay=None, train_index=None,
              grid=None, rho=None):
    """Train the K models of ``model`` (a ``StackedMLP`` or a ``StackedModel``, e.g. K
    CNNs) on ``data`` at once.

    ``grid`` (a ``Grid`` of K points) shapes the returned curves
    ``(epochs, *grid.shape)``; its ``lr`` and ``weight_decay`` axes, if it has
    them, set those per model. ``lr`` and ``weight_decay`` are per-model
    (length K, or one value for all; default: the grid's, else the config's).
    ``train_index`` (K, n) picks each model's own
    training examples from ``data.train`` (e.g. bootstrap resamples). Early
    stopping (``config.patience``) freezes each model on its own and restores
    its best weights. ``penalty``, ``after_step``, ``lr_schedule``, ``augment``
    and ``transform`` from the config apply as in ``fit``, except that
    ``penalty(model)`` returns
    one value per model, ``after_step(model, lr)`` receives the (K,) tensor
    of per-model learning rates, and ``augment`` may return a ``(K, N, d)``
    batch to give each model its own transformed copy (e.g. its own random
    draws: ``augment(x.expand(K, -1, -1), generator)``); ``transform`` may
    likewise return ``(K, N, d)`` inputs and ``(K, N, C)`` soft targets.
    ``rho`` (per model, or the grid's ``rho`` axis) makes each step a step of
    sharpness-aware minimisation (Foret et al.): the batch's gradient ``g`` is taken
    again at the weights ``w + rho g / |g|`` (``|g|`` over all of a model's
    parameters), and the optimizer steps from ``w`` with that second gradient; the
    same batch, so two gradient evaluations a step (rho 0: the plain gradient, twice).
    The second pass leaves batch-norm statistics as the first left them.
    A ``StackedMLP`` sees flattened inputs ``(N, d)``; a ``StackedModel`` sees
    them in the data's own shape, ``(N, *data.in_shape)`` shared or
    ``(K, N, *data.in_shape)`` per model (e.g. ``(K, N, 40)`` for MNIST-1D).

    A model whose training loss becomes non-finite (at an epoch whose training loss
    ``config.curves`` and ``curves_at`` leave out: its weights, batch-norm statistics
    or validation loss) stops training (the others go on), with a warning; ``history.diverged_at`` records when. If every
    model diverges, ``DivergenceError`` is raised; its ``.history`` holds
    every epoch before that.
    """
    if not isinstance(model, (StackedMLP, StackedModel)):
        raise ValueError("sweep_fit trains a StackedMLP or a StackedModel (labkit.vmapped)")
    k, dev = model.k, data.train.x.device
    # e: axes per example as the model sees them; an MLP's inputs are flattened
    mlp = isinstance(model, StackedMLP)
    e = 1 if mlp else data.train.x.ndim - 1
    prep = (lambda t: t.flatten(1)) if mlp else (lambda t: t)  # noqa: E731
    if not mlp:
        _check_stacked(model, data)
    grid = Grid(model=list(range(k))) if grid is None else grid
    if not isinstance(grid, Grid) or grid.k != k:
        raise ValueError(f"grid must be a Grid of K={k} points, one per model, got {grid!r}")
    lr = grid["lr"] if lr is None and "lr" in grid.axes else lr
    wd = grid["weight_decay"] if weight_decay is None and "weight_decay" in grid.axes \
        else weight_decay
    rho = grid["rho"] if rho is None and "rho" in grid.axes else rho
    lr = _per_model(config.lr if lr is None else lr, k, "lr").to(dev)
    wd = _per_model(config.weight_decay if wd is None else wd, k, "weight_decay").to(dev)
    if (lr <= 0).any() or (wd < 0).any():
        raise ValueError("every lr must be > 0 and every weight_decay >= 0")
    if rho is not None:
        rho = _per_model(rho, k, "rho").to(dev)[:, None]
        if (rho < 0).any():
            raise ValueError("every rho (SAM's radius) must be >= 0, "
                             f"got {rho.flatten().tolist()}")
    loss = loss_fn(config.loss, data.num_classes)
    check_monitor(config, loss)
    train, val = data.train, data.val
    watched = monitored_split(config, val)
    if train_index is None:
        xs, ys, n = prep(train.x), train.y, len(train)
    else:
        train_index = torch.as_tensor(train_index, device=dev)
        if train_index.ndim != 2 or train_index.shape[0] != k:
            raise ValueError(f"train_index must have shape (K={k}, n), "
                             f"got {tuple(train_index.shape)}")
        if train_index.min() < 0 or train_index.max() >= len(train):
            raise ValueError(f"train_index must index into the {len(train)} training examples")
        xs, ys, n = prep(train.x)[train_index], train.y[train_index], train_index.shape[1]
    val_x = prep(val.x)
    params = list(model.parameters())
    flat, flat_grad, grad_views = flatten(params)
    opt = Optimizer(flat, flat_grad, config, fused=optim.FUSED)
    written_out = _written_out(model, config, loss, params)
    g = generator(config.seed)  # shuffles and augmentation draws; shifts with LABKIT_SEED
    active = torch.ones(k, dtype=torch.bool, device=dev)
    best = torch.full((k,), math.inf, device=dev)
    best_epoch = torch.zeros(k, dtype=torch.long, device=dev)
    bad = torch.zeros(k, dtype=torch.long, device=dev)
    diverged_at = torch.full((k,), -1, dtype=torch.long, device=dev)
    best_flat = flat.clone() if config.patience else None
    best_buffers = [b.clone() for b in model.buffers()] if config.patience else None
    curves, start = [], time.perf_counter()
    skipped = (torch.full((k,), math.nan, device=dev),) * 2  # a split left out of curves
    if rho is not None:  # SAM's copies of the weights and buffers, reused every step
        at, stats = torch.empty_like(flat), [torch.empty_like(b) for b in model.buffers()]

    scratch = {}  # the written-out backward's memory, the same every step

    def gradients(x, y):  # the batch's gradients, into flat_grad
        if written_out and not y.is_floating_point():
            model.cross_entropy_grads(x, y, grad_views, scratch)
        else:
            per_model = _losses(_forward(model, x, e), y, loss)
            if config.penalty is not None:
                per_model = per_model + config.penalty(model)
            grads = torch.autograd.grad(per_model.sum(), params)
            with torch.no_grad():
                torch._foreach_copy_(grad_views, grads)

    for epoch in progress_bar(config):
        factor = config.lr_schedule(epoch) if config.lr_schedule else 1.0
        step_lr = lr * factor * active
        opt.set_rates(step_lr, wd * active)
        model.train()
        order = torch.randperm(n, generator=g).to(dev)
        # one gather per epoch; each batch is then a view (dim 1 when models have own data)
        dim = 0 if train_index is None else 1
        ex, ey = xs.index_select(dim, order), ys.index_select(dim, order)
        with no_host_sync(dev):
            for i in range(0, n, config.batch_size):
                x = ex.narrow(dim, i, min(config.batch_size, n - i))
                y = ey.narrow(dim, i, x.shape[dim])
                if config.augment is not None:
                    x = _own_batch(config.augment(x, g), k, "augment", e)
                if config.transform is not None:
                    x, y = config.transform(x, y, g)
                    x = _own_batch(x, k, "transform", e)
                gradients(x, y)
                if rho is not None:  # SAM: the gradient again, at the ascent point
                    with torch.no_grad():
                        at.copy_(flat)
                        for kept, b in zip(stats, model.buffers()):
                            kept.copy_(b)
                        norm = flat_grad.norm(dim=1, keepdim=True)
                        flat.addcmul_(flat_grad, rho / norm.clamp_min(1e-12))
                    gradients(x, y)
                    with torch.no_grad():
                        flat.copy_(at)
                        for b, kept in zip(model.buffers(), stats):
                            b.copy_(kept)
                with torch.no_grad():
                    opt.step()
                    if config.after_step is not None:
                        config.after_step(model, step_lr)
        now = curves_now(config, epoch)
        tr = _evaluate(model, xs, ys, loss, e=e) if "train" in now else skipped
        va = _evaluate(model, val_x, val.y, loss, e=e) if len(val) and "val" in now \
            else skipped
        # the training loss if it is evaluated, else the weights, the per-model buffers
        # (batch norm's statistics can overflow while the weights stay finite) and the
        # validation loss if it is evaluated
        if "train" in now:
            finite, what = torch.isfinite(tr[0]), "the training loss is"
        else:
            finite = torch.isfinite(flat).all(1) & (torch.isfinite(va[0]) | (va is skipped))
            what = "the weights, batch-norm statistics or validation loss are"
            for b in model.buffers():
                if b.shape[:1] == (k,) and b.is_floating_point():
                    finite &= torch.isfinite(b).reshape(k, -1).all(1)
        if not bool(finite.all()):  # a host sync, once per epoch
            new = (~finite & (diverged_at < 0)).nonzero().flatten().tolist()
            diverged_at[new] = epoch
            if not bool(finite.any()):
                raise DivergenceError(
                    f"all {k} models diverged (the last at epoch {epoch}): "
                    f"{what} not finite. Try smaller learning rates. "
                    "The curves so far are in .history.",
                    history(curves, best_epoch, start, diverged_at, grid))
            if new:
                names = "; ".join(", ".join(f"{a}={v}" for a, v in
                                            {**grid.point(j), "lr": f"{lr[j].item():g}"}.items())
                                  for j in new)
                warnings.warn(f"models {new} ({names}) diverged at epoch {epoch}; "
                              "they stop training, the others go on. Their curves are NaN from "
                              "here; history.diverged_at records when.", RuntimeWarning,
                              stacklevel=2)
        ok = diverged_at < 0
        active &= ok
        curves.append(torch.where(ok, torch.stack([tr[0], tr[1], va[0], va[1]]), math.nan))
        if watched in now:
            monitored = score(config, tr, va if len(val) else None)
            improved = (monitored < best - config.min_delta) & active
        else:  # nothing watched (at this epoch): the last epoch is the best known
            monitored, improved = best, active.clone()
        best = torch.where(improved, monitored, best)
        best_epoch = torch.where(improved, epoch, best_epoch)
        bad = torch.where(improved, 0, bad + active.long())
        if config.patience:
            with torch.no_grad():
                best_flat.copy_(torch.where(improved[:, None], flat, best_flat))
                for keep, b in zip(best_buffers, model.buffers()):
                    if b.shape[:1] == (k,):
                        keep.copy_(torch.where(improved.view(-1, *[1] * (b.ndim - 1)), b, keep))
            active = active & (bad < config.patience)
            if not bool(active.any()):
                break
    if config.patience and config.restore_best:
        with torch.no_grad():
            flat.copy_(best_flat)
            for keep, b in zip(best_buffers, model.buffers()):
                b.copy_(keep)
    return history(curves, best_epoch, start, diverged_at, grid)


def _written_out(model, config, loss, params):
    """Whether a step may take ``StackedMLP.cross_entropy_grads``, the backward pass
    written out (the same gradients, bit for bit, without autograd's bookkeeping):
    a stack without batch norm (dropout is written out too), the cross-entropy on
    hard labels (checked per batch), no penalty, every parameter trained, and nothing
    that changes the forward pass (hooks, parametrizations, a subclass's own
    ``forward``)."""
    if not (isinstance(model, StackedMLP) and not model.batchnorm and stacked.WRITTEN_OUT):
        return False
    hooks = [model._forward_hooks, model._forward_pre_hooks,
             nn.modules.module._global_forward_hooks,
             nn.modules.module._global_forward_pre_hooks]
    return (loss is F.cross_entropy and config.penalty is None
            and all(p.requires_grad for p in params) and not any(hooks)
            and type(model).forward is StackedMLP.forward
            and not any(parametrize.is_parametrized(m) for m in model.modules()))


def _check_stacked(model, data):
    """A clear error before training if the K models do not take ``data``'s examples."""
    train = data.train
    if len(train) == 0:
        raise ValueError("the training split is empty")
    for name, p in model.named_parameters():
        if p.device != train.x.device:
            raise ValueError(f"parameter {name} is on {p.device} but the data is on "
                             f"{train.x.device}; move the model with model.to(device)")
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(train.x[:2], per_model=False)
    finally:
        model.train(was)
    c = data.num_classes
    if c and (out.ndim != 3 or out.shape[:2] != (model.k, 2) or out.shape[2] < c):
        raise ValueError(f"the stacked models give outputs of shape {tuple(out.shape)} for "
                         f"inputs {tuple(train.x[:2].shape)}, expected (K={model.k}, 2, {c}) "
                         "class scores")
