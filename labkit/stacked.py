"""K copies of one MLP as one module, and an optimizer that steps them all at once.

``StackedMLP`` stacks the K models' weights on a leading K axis, so a forward
pass is one batched matmul (``baddbmm``) per layer. Each model keeps its own
dropout rate and masks and its own batch-norm statistics. The K losses are
summed, so each model's gradient is exactly its own.

Why not ``torch.func``? Measured on 2 CPU cores (forward and backward of K=16
MLPs 40-128-128-10, batch 64; ``benchmarks/vmap_vs_stacked.py``, best of 5,
two runs on 2026-11-24), ``vmap(functional_call)`` over ``stack_module_state``
took 1.3-1.4x as long a step as this module without batch norm, 0.9-1.1x with
it, and 1.7-2.0x with dropout (``randomness="different"``). Other architectures
(a CNN) are stacked by ``labkit.vmapped.StackedModel``.

The optimizer: ``torch.optim`` takes one learning rate and weight decay per
parameter group, and stepping K x (layers) stacked tensors one operation at a
time was a sixth of a sweep's time (580 us a step for K=16, against 123 us
fused). ``flatten`` puts all parameters in one (K, P) buffer whose row k is
model k, and ``Optimizer`` runs the fused kernels that ``torch.optim`` itself
runs with ``fused=True`` (as ``fit`` does) on the rows of each group of models
sharing a learning rate and weight decay (``tests/test_sweep.py`` checks against
separate ``fit`` runs).
"""
import math

import torch
from torch import nn

from .models import MLP, check_dropout
from .runtime import seed_all
from .train import ADAM_BETAS, ADAM_EPS, fused_update

__all__ = ["StackedMLP", "flatten", "Optimizer"]

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


def flatten(params):
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


class Optimizer:
    """torch.optim's SGD, Adam or AdamW on the flat (K, P) parameters ``p`` with
    gradients ``g``, each model with its own learning rate and weight decay.

    On CPU, CUDA and MPS a step calls the fused kernels that ``torch.optim`` runs
    with ``fused=True`` (as ``fit`` does), once for each group of models that
    share a learning rate and weight decay: one pass over memory per group.
    Elsewhere it applies the same update rules with tensor operations.
    """

    (b1, b2), eps = ADAM_BETAS, ADAM_EPS

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
        if self.config.optimizer != "sgd":
            self.step_count.add_(1)
        for lr, wd, (p, g, *state) in self.groups:
            fused_update(self.config, p, g, state or [[]], lr, wd, self.step_count)

    def _sgd_step(self):
        p, g, lr = self.p, self.g, self.lr
        if self.decay:
            g.addcmul_(p, self.wd)
        if self.buf is not None:  # from zero: momentum * 0 + g = g exactly on the first step
            g = self.buf.mul_(self.config.momentum).add_(g)
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
