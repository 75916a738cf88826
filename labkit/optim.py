"""The optimizer of K stacked models: each model with its own learning rate and
weight decay, at the cost of one fused kernel call per group of models.

``torch.optim`` takes one learning rate and weight decay per parameter group,
and stepping K x (layers) stacked tensors one operation at a time was a sixth
of a sweep's time (580 us a step for K=16, against 123 us fused). ``flatten``
puts all parameters in one (K, P) buffer whose row k is model k, and
``Optimizer`` runs the fused kernels that ``torch.optim`` itself runs with
``fused=True`` (as ``fit`` does) on the rows of each group of models sharing a
learning rate and weight decay, or on the whole buffer when one group holds
every model (``tests/test_sweep.py`` checks against separate ``fit`` runs).
"""
import math

import torch

from .train import ADAM_BETAS, ADAM_EPS, fused_update

__all__ = ["flatten", "Optimizer"]

FUSED = None  # None: the fused optimizer kernels where the device has them; False: never


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
        # a group of every model steps the whole (K, P) buffers, one tensor each (a
        # kernel call per tensor: 79 us a step against 120 for 16 rows, benchmark MLP)
        self.groups = [(a, b, [[t] if len(rows) == len(lr) else [t[j] for j in rows]
                               for t in [self.p, self.g] + state if t is not None])
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
