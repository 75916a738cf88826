"""Train K variants of one MLP at once, weights stacked on a leading K axis.

Each model keeps its own hyperparameters (learning rate, weight decay,
dropout rate) as entries of a length-K tensor, its own dropout masks, its own
batch-norm statistics and, optionally, its own resampled training set. The
K losses are summed, so each model's gradient is exactly its own.

Why not ``torch.func`` and ``torch.optim``? Measured on 2 CPU cores (forward and
backward of K=16 MLPs 40-128-128-10, batch 64; ``benchmarks/vmap_vs_stacked.py``),
``vmap(functional_call)`` over ``stack_module_state`` took 1.2-1.3x as long a
step as this module without batch norm (2.53 vs 2.07 ms; 2.66 vs 2.01 ms in a
second run), 1.03-1.15x with it, and 1.7-1.9x with dropout
(``randomness="different"``). The batched matmul (``baddbmm``) path is as fast
or faster in every case, so it stays. ``torch.optim`` takes one scalar learning
rate and weight decay per parameter group, so per-model (K,) values cannot be
expressed on stacked tensors; ``_step`` follows its update rules exactly
(``tests/test_sweep.py`` checks against separate ``fit`` runs).
"""
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .models import MLP, check_dropout
from .runtime import generator, no_host_sync, seed_all
from .train import DivergenceError, FitConfig, check_monitor, loss_fn, progress_bar, score

__all__ = ["Grid", "StackedMLP", "SweepHistory", "sweep_fit"]

EVAL_ROWS = 4096  # examples x models per evaluation chunk
FUSED = None  # None: the fused optimizer kernels where the device has them; False: never


def _per_model(value, k, name):
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(k).clone()
    if t.numel() != k:
        raise ValueError(f"{name} needs 1 or {k} values (one per model), got {t.numel()}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t


class StackedMLP(nn.Module):
    """K copies of one ``labkit.models.MLP`` architecture, trained side by side.

    Build it from K MLPs (so each starts from exactly the weights a separate
    fit would use): ``StackedMLP([MLP(...), ...], dropout=[...])``, or
    ``StackedMLP.from_seeds(lambda: MLP(...), seeds)``.
    Input ``(N, d)`` is shared by all models; ``(K, N, d)`` gives each its own.
    Output is ``(K, N, out)``.
    """

    def __init__(self, models, dropout=0.0):
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(m, MLP) for m in models):
            raise ValueError("StackedMLP needs a non-empty list of labkit.models.MLP")
        self.k = len(models)
        shapes = [[tuple(p.shape) for p in m.parameters()] for m in models]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("all MLPs in a sweep must have the same architecture")
        p = _per_model(dropout, self.k, "dropout")
        for v in p.tolist():
            check_dropout(v)
        self.register_buffer("p", p)
        self.any_dropout = bool((p > 0).any())  # decided once: no host sync per forward pass
        self.in_dim = models[0].in_dim
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.gammas, self.betas = nn.ParameterList(), nn.ParameterList()
        self.batchnorm = any(isinstance(m, nn.BatchNorm1d) for m in models[0])
        linears = [[m for m in model if isinstance(m, nn.Linear)] for model in models]
        norms = [[m for m in model if isinstance(m, nn.BatchNorm1d)] for model in models]
        for layer in zip(*linears):
            self.weights.append(nn.Parameter(torch.stack([l.weight.detach().t() for l in layer])))
            self.biases.append(nn.Parameter(torch.stack([l.bias.detach()[None] for l in layer])))
        for i, layer in enumerate(zip(*norms)):
            self.gammas.append(nn.Parameter(torch.stack([b.weight.detach()[None] for b in layer])))
            self.betas.append(nn.Parameter(torch.stack([b.bias.detach()[None] for b in layer])))
            self.register_buffer(f"mean{i}", torch.stack([b.running_mean[None] for b in layer]))
            self.register_buffer(f"var{i}", torch.stack([b.running_var[None] for b in layer]))
        self.momentum = 0.1

    @classmethod
    def from_seeds(cls, build, seeds, dropout=0.0):
        """Stack ``build()`` called once per local seed, each after ``seed_all(seed)``:
        model j starts from the weights a separate run seeded with ``seeds[j]`` would use."""
        models = []
        for seed in seeds:
            seed_all(seed)
            models.append(build())
        return cls(models, dropout=dropout)

    @classmethod
    def from_grid(cls, build, grid):
        """One model per point of ``grid`` (a ``Grid`` with a ``seed`` axis), seeded by it;
        a ``dropout`` axis, if the grid has one, sets each model's rate."""
        dropout = grid["dropout"] if "dropout" in grid.axes else 0.0
        return cls.from_seeds(build, grid["seed"], dropout=dropout)

    def _norm(self, h, i):
        mean, var = getattr(self, f"mean{i}"), getattr(self, f"var{i}")
        if self.training:
            m, v = h.mean(1, keepdim=True), h.var(1, unbiased=False, keepdim=True)
            n = h.shape[1]
            with torch.no_grad():
                mean.lerp_(m, self.momentum)
                var.lerp_(v * n / max(n - 1, 1), self.momentum)
        else:
            m, v = mean, var
        return (h - m) * torch.rsqrt(v + 1e-5) * self.gammas[i] + self.betas[i]

    def forward(self, x):
        if x.ndim not in (2, 3) or x.shape[-1] != self.in_dim:
            raise ValueError(f"StackedMLP expects {self.in_dim} features, got {tuple(x.shape)}")
        h = x.unsqueeze(0).expand(self.k, -1, -1) if x.ndim == 2 else x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i == last:
                break
            if self.batchnorm:
                h = self._norm(h, i)
            h = torch.relu_(h)  # in place: the layer before does not need its output
            if self.training and self.any_dropout:
                keep = 1 - self.p[:, None, None]
                h = h * (torch.rand_like(h) < keep) / keep
        return h

    def unstack(self, index, template):
        """Copy model ``index``'s weights into ``template`` (an MLP of the same shape)."""
        linears = [m for m in template if isinstance(m, nn.Linear)]
        norms = [m for m in template if isinstance(m, nn.BatchNorm1d)]
        with torch.no_grad():
            for l, w, b in zip(linears, self.weights, self.biases):
                l.weight.copy_(w[index].t())
                l.bias.copy_(b[index, 0])
            for i, bn in enumerate(norms):
                bn.weight.copy_(self.gammas[i][index, 0])
                bn.bias.copy_(self.betas[i][index, 0])
                bn.running_mean.copy_(getattr(self, f"mean{i}")[index, 0])
                bn.running_var.copy_(getattr(self, f"var{i}")[index, 0])
        return template


class Grid:
    """The settings of a sweep, one model per point: ``Grid(p=[0.0, 0.5], seed=seeds(3))``.

    Axes are named; models are laid out in row-major order (the last axis
    varies fastest). ``grid["p"]`` is the value of ``p`` for each of the K
    models, ready for ``StackedMLP`` or ``sweep_fit``; a sweep trained with
    ``grid=`` returns curves shaped ``(epochs, *grid.shape)`` and ``h.sel(p=0.5)``.
    """

    def __init__(self, **axes):
        if not axes:
            raise ValueError("a Grid needs at least one axis, e.g. Grid(seed=seeds(3))")
        self.axes = {}
        for name, values in axes.items():
            values = list(values)
            if not values or len(set(map(repr, values))) != len(values):
                raise ValueError(f"grid axis {name!r} needs distinct values, got {values!r}")
            self.axes[name] = values
        self.shape = tuple(len(v) for v in self.axes.values())
        self.k = math.prod(self.shape)

    def __len__(self):
        return self.k

    def __getitem__(self, name):
        if name not in self.axes:
            raise KeyError(f"the grid has axes {list(self.axes)}, not {name!r}")
        i = list(self.axes).index(name)
        index = np.unravel_index(np.arange(self.k), self.shape)[i]
        return [self.axes[name][j] for j in index]

    def point(self, j):
        """Model ``j``'s value on every axis, as a dict."""
        return {name: self[name][j] for name in self.axes}

    def index(self, **where):
        """The flat model indices (0..K-1) at the given axis values: ``grid.index(lr=0.1)``."""
        keep = np.ones(self.k, dtype=bool)
        for name, value in where.items():
            if value not in self.axes.get(name, []):
                raise KeyError(f"{name}={value!r} is not a point of {self!r}")
            keep &= np.array([v == value for v in self[name]])
        return np.flatnonzero(keep).tolist()

    def __repr__(self):
        return "Grid(" + ", ".join(f"{n}={v!r}" for n, v in self.axes.items()) + ")"


CURVES = ("train_loss", "train_acc", "val_loss", "val_acc")


@dataclass
class SweepHistory:
    """Curves of a sweep: each curve has shape ``(epochs, *grid.shape)``.

    The same vocabulary as ``History``: ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc``, ``best_epoch``, ``last``, ``best``.
    ``diverged_at`` is the epoch at which a model's training loss became
    non-finite (-1 if it never did); its curves are NaN from that epoch on.
    ``sel(p=0.5)`` picks one value of a grid axis.
    """

    train_loss: np.ndarray
    train_acc: np.ndarray
    val_loss: np.ndarray
    val_acc: np.ndarray
    best_epoch: np.ndarray
    seconds: float
    diverged_at: np.ndarray
    grid: Grid | None

    @property
    def diverged(self):
        return self.diverged_at >= 0

    @property
    def last(self):
        """The curves at the last epoch: a dict of arrays shaped like the grid."""
        return {k: getattr(self, k)[-1] for k in CURVES}

    @property
    def best(self):
        """The curves at each model's ``best_epoch``: a dict of arrays shaped like the grid."""
        return {k: np.take_along_axis(getattr(self, k), self.best_epoch[None], 0)[0]
                for k in CURVES}

    def sel(self, **where):
        """The sub-sweep at one value of each named axis: ``h.sel(p=0.5, lr=0.1)``."""
        axes, keep = dict(self.grid.axes), [slice(None)] * len(self.grid.shape)
        for name, value in where.items():
            if name not in axes:
                raise KeyError(f"the grid has axes {list(self.grid.axes)}, not {name!r}")
            if value not in axes[name]:
                raise KeyError(f"{name}={value!r} is not among {axes[name]!r}")
            keep[list(self.grid.axes).index(name)] = axes[name].index(value)
            del axes[name]
        index = tuple(keep)
        curves = {k: getattr(self, k)[(slice(None),) + index] for k in CURVES}
        return SweepHistory(**curves, best_epoch=self.best_epoch[index], seconds=self.seconds,
                            diverged_at=self.diverged_at[index],
                            grid=Grid(**axes) if axes else None)


def _losses(out, y, loss):
    """Per-model mean loss: out (K, N, C|1), y (N,) shared or (K, N)."""
    k, n = out.shape[:2]
    if y.ndim == (1 if loss is F.cross_entropy else 2):  # shared by all models
        y = y.expand(k, *y.shape)
    if loss is F.cross_entropy:
        per = F.cross_entropy(out.reshape(k * n, -1), y.reshape(k * n), reduction="none")
        return per.view(k, n).mean(1)
    return F.mse_loss(out, y.expand_as(out), reduction="none").reshape(k, -1).mean(1)


@torch.no_grad()
def _evaluate(model, x, y, loss, chunk=None):
    was = model.training
    model.eval()
    # chunks of about 4096 examples x models keep activations in cache and allocations small
    chunk = chunk or max(16, EVAL_ROWS // model.k)
    out = torch.cat([model(x[..., i:i + chunk, :]) for i in range(0, x.shape[-2], chunk)], -2)
    model.train(was)
    if y.ndim == (1 if loss is F.cross_entropy else 2):
        y = y.expand(model.k, *y.shape)
    acc = (out.argmax(-1) == y).float().mean(1) if loss is F.cross_entropy else \
        torch.full((model.k,), math.nan, device=out.device)
    return _losses(out, y, loss), acc


def _flatten(params):
    """Move the K models' parameters into one (K, P) buffer, each parameter a view of
    its columns, so that an optimizer step is a handful of operations on one
    tensor instead of a handful per parameter tensor. Returns the buffer and a
    gradient buffer laid out the same way, with the views into it."""
    k, sizes = params[0].shape[0], [p[0].numel() for p in params]
    flat = params[0].new_empty(k, sum(sizes))
    grad = torch.zeros_like(flat)
    views, off = [], 0
    with torch.no_grad():
        for p, n in zip(params, sizes):
            view = flat[:, off:off + n].view(p.shape)
            view.copy_(p)
            p.data = view
            views.append(grad[:, off:off + n].view(p.shape))
            off += n
    return flat, grad, views


class _Optimizer:
    """torch.optim's SGD, Adam or AdamW on the flat (K, P) parameters ``p`` with
    gradients ``g``, each model with its own learning rate and weight decay.

    On CPU, CUDA and MPS a step calls the fused kernels that ``torch.optim`` runs
    with ``fused=True`` (as ``fit`` does), once for each group of models that
    share a learning rate and weight decay: one pass over memory per group.
    Elsewhere it applies the same update rules with tensor operations.
    """

    b1, b2, eps = 0.9, 0.999, 1e-8

    def __init__(self, p, g, config, fused=None):
        self.p, self.g, self.config, self.t = p, g, config, 0
        self.fused = p.device.type in ("cpu", "cuda", "mps") if fused is None else fused
        self.step_count = torch.zeros((), dtype=torch.float32, device=p.device)
        if config.optimizer == "sgd":
            self.buf = torch.zeros_like(p) if config.momentum > 0 else None
        else:
            self.m, self.v = torch.zeros_like(p), torch.zeros_like(p)

    def set_rates(self, lr, wd):
        """Per-model (K,) learning rates and decays for the steps to come (one host
        sync); a model with learning rate 0 is left alone."""
        self.lr, self.wd = lr[:, None], wd[:, None]
        self.decay = bool((wd > 0).any())
        groups = {}
        for j, (a, b) in enumerate(zip(lr.tolist(), wd.tolist())):
            if a > 0:
                groups.setdefault((a, b), []).append(j)
        state = [self.buf] if self.config.optimizer == "sgd" else [self.m, self.v]
        self.groups = [(a, b, [[t[j] for j in rows] for t in [self.p, self.g] + state
                               if t is not None])
                       for (a, b), rows in groups.items()]

    def step(self):
        self.t += 1
        if self.fused:
            self._fused_step()
        elif self.config.optimizer == "sgd":
            self._sgd_step()
        else:
            self._adam_step()

    def _fused_step(self):
        cfg = self.config
        if cfg.optimizer == "sgd":
            for lr, wd, (p, g, *buf) in self.groups:
                torch._fused_sgd_(p, g, buf[0] if buf else [], weight_decay=wd, momentum=cfg.momentum, lr=lr,
                                  dampening=0.0, nesterov=False, maximize=False,
                                  is_first_step=self.t == 1)
            return
        self.step_count.add_(1)
        kernel = torch._fused_adamw_ if cfg.optimizer == "adamw" else torch._fused_adam_
        for lr, wd, (p, g, m, v) in self.groups:
            kernel(p, g, m, v, [], [self.step_count] * len(p), amsgrad=False, lr=lr,
                   beta1=self.b1, beta2=self.b2, weight_decay=wd, eps=self.eps,
                   maximize=False)

    def _sgd_step(self):
        p, g, lr = self.p, self.g, self.lr
        if self.decay:
            g.addcmul_(p, self.wd)
        if self.buf is not None:
            if self.t == 1:
                self.buf.copy_(g)
            else:
                self.buf.mul_(self.config.momentum).add_(g)
            g = self.buf
        p.addcmul_(g, lr, value=-1)

    def _adam_step(self):
        p, g, m, v, t = self.p, self.g, self.m, self.v, self.t
        if self.decay:
            if self.config.optimizer == "adamw":
                p.mul_(1 - self.lr * self.wd)
            else:
                g.addcmul_(p, self.wd)
        m.lerp_(g, 1 - self.b1)
        v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        # p -= step * m / denom, step = lr / (1 - b1^t) per model, in place (lr 0: no step);
        # the denominator is built in g's memory, which this step no longer needs
        denom = torch.sqrt(v, out=g).div_(math.sqrt(1 - self.b2 ** t)).add_(self.eps)
        p.addcdiv_(m, denom.div_(self.lr / (1 - self.b1 ** t)), value=-1)


def sweep_fit(model, data, config=FitConfig(), lr=None, weight_decay=None, train_index=None,
              grid=None):
    """Train the K models of ``model`` (a StackedMLP) on ``data`` at once.

    ``grid`` (a ``Grid`` of K points) shapes the returned curves
    ``(epochs, *grid.shape)``; its ``lr`` and ``weight_decay`` axes, if it has
    them, set those per model. ``lr`` and ``weight_decay`` are per-model
    (length K, or one value for all; default: the grid's, else the config's).
    ``train_index`` (K, n) picks each model's own
    training examples from ``data.train`` (e.g. bootstrap resamples). Early
    stopping (``config.patience``) freezes each model on its own and restores
    its best weights. ``penalty``/``after_step``/``lr_schedule``/``augment``
    from the config apply as in ``fit``, except that ``penalty(model)`` returns
    one value per model, ``after_step(model, lr)`` receives the (K,) tensor
    of per-model learning rates, and ``augment`` may return a ``(K, N, d)``
    batch to give each model its own transformed copy (e.g. its own random
    draws: ``augment(x.expand(K, -1, -1), generator)``).

    A model whose training loss becomes non-finite stops training (the others
    go on), with a warning; ``history.diverged_at`` records when. If every
    model diverges, ``DivergenceError`` is raised; its ``.history`` holds
    every epoch before that.
    """
    if not isinstance(model, StackedMLP):
        raise ValueError("sweep_fit trains a StackedMLP")
    k, dev = model.k, data.train.x.device
    grid = Grid(model=list(range(k))) if grid is None else grid
    if not isinstance(grid, Grid) or grid.k != k:
        raise ValueError(f"grid must be a Grid of K={k} points, one per model, got {grid!r}")
    lr = grid["lr"] if lr is None and "lr" in grid.axes else lr
    wd = grid["weight_decay"] if weight_decay is None and "weight_decay" in grid.axes \
        else weight_decay
    lr = _per_model(config.lr if lr is None else lr, k, "lr").to(dev)
    wd = _per_model(config.weight_decay if wd is None else wd, k, "weight_decay").to(dev)
    if (lr <= 0).any() or (wd < 0).any():
        raise ValueError("every lr must be > 0 and every weight_decay >= 0")
    loss = loss_fn(config.loss, data.num_classes)
    check_monitor(config, loss)
    train, val = data.train, data.val
    if train_index is None:
        xs, ys, n = train.x.flatten(1), train.y, len(train)
    else:
        train_index = torch.as_tensor(train_index, device=dev)
        if train_index.ndim != 2 or train_index.shape[0] != k:
            raise ValueError(f"train_index must have shape (K={k}, n), "
                             f"got {tuple(train_index.shape)}")
        if train_index.min() < 0 or train_index.max() >= len(train):
            raise ValueError(f"train_index must index into the {len(train)} training examples")
        xs, ys, n = train.x.flatten(1)[train_index], train.y[train_index], train_index.shape[1]
    val_x = val.x.flatten(1)
    params = list(model.parameters())
    flat, flat_grad, grad_views = _flatten(params)
    opt = _Optimizer(flat, flat_grad, config, fused=FUSED)
    g = generator(config.seed)  # shuffles and augmentation draws; shifts with LABKIT_SEED
    active = torch.ones(k, dtype=torch.bool, device=dev)
    best = torch.full((k,), math.inf, device=dev)
    best_epoch = torch.zeros(k, dtype=torch.long, device=dev)
    bad = torch.zeros(k, dtype=torch.long, device=dev)
    diverged_at = torch.full((k,), -1, dtype=torch.long, device=dev)
    best_flat = flat.clone() if config.patience else None
    best_buffers = [b.clone() for b in model.buffers()] if config.patience else None
    curves, start = [], time.perf_counter()
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
                    x = config.augment(x, g)
                    if x.ndim == 3 and x.shape[0] != k:
                        raise ValueError(f"augment returned shape {tuple(x.shape)}: a batch "
                                         f"with one copy per model must have K={k} first, "
                                         "(K, N, features)")
                per_model = _losses(model(x), y, loss)
                if config.penalty is not None:
                    per_model = per_model + config.penalty(model)
                grads = torch.autograd.grad(per_model.sum(), params)
                with torch.no_grad():
                    torch._foreach_copy_(grad_views, grads)
                    opt.step()
                    if config.after_step is not None:
                        config.after_step(model, step_lr)
        tr = _evaluate(model, xs, ys, loss)
        va = _evaluate(model, val_x, val.y, loss)
        finite = torch.isfinite(tr[0])
        if not bool(finite.all()):  # a host sync, once per epoch
            new = (~finite & (diverged_at < 0)).nonzero().flatten().tolist()
            diverged_at[new] = epoch
            if not bool(finite.any()):
                raise DivergenceError(
                    f"all {k} models diverged (the last at epoch {epoch}): the training loss is "
                    "not finite. Try smaller learning rates. The curves so far are in .history.",
                    _history(curves, best_epoch, start, diverged_at, grid))
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
        monitored = score(config, tr, va if len(val) else None)
        improved = (monitored < best - config.min_delta) & active
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
    return _history(curves, best_epoch, start, diverged_at, grid)


def _history(curves, best_epoch, start, diverged_at, grid):
    c = torch.stack(curves).cpu().numpy() if curves else np.zeros((0, 4, grid.k), np.float32)
    c = c.reshape(len(c), 4, *grid.shape)
    return SweepHistory(c[:, 0], c[:, 1], c[:, 2], c[:, 3],
                        best_epoch.cpu().numpy().reshape(grid.shape),
                        time.perf_counter() - start, diverged_at.cpu().numpy().reshape(grid.shape),
                        grid)
