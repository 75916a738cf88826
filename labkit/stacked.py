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

The arithmetic is laid out for speed where measurement said so: a narrow
class layer is computed transposed (``affine``), the cross-entropy has its
gradient written out (``CrossEntropy``), and a stack without batch norm (with or
without dropout) can compute its gradients without autograd (``cross_entropy_grads``),
bit for bit the same. Tests check each against autograd; the README's benchmark
section has the profiles. Its optimizer is in ``labkit.optim``.
"""
import torch
from torch import nn

from .models import MLP, check_dropout
from .runtime import seeded

__all__ = ["StackedMLP", "CrossEntropy", "affine"]

WRITTEN_OUT = True  # False: every sweep takes autograd (tests compare the two)


NARROW = 32  # an output this much narrower than its input (a class layer) is computed transposed


def _portable_kernels():
    # PyTorch's CPU kernels without AVX2 (an older CPU, or ATEN_CPU_CAPABILITY=default):
    # there ReLU's backward, threshold_backward, has no vector code and took 2.6 ms on
    # (16, 100, 256) floats against 0.5 ms for a multiply by the mask (0.22 ms against
    # 0.52 ms the other way round with AVX-512; one thread, 2026-12-05)
    try:
        return torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    except (AttributeError, RuntimeError):
        return False


MASK_RELU_BACKWARD = _portable_kernels()


def relu_backward(g, a):
    """ReLU's backward: ``g`` where the ReLU's output ``a`` was positive, else zero
    (the same numbers either way, up to the sign of a zero)."""
    if MASK_RELU_BACKWARD and g.device.type == "cpu":
        return g.mul_(a.bool())
    return torch.ops.aten.threshold_backward(g, a, 0)


def _narrow(w):
    return w.shape[2] < NARROW <= w.shape[1]


def affine(h, w, b):
    """``h @ w + b`` for K stacked models: h (K, N, in), w (K, in, out), b (K, 1, out).

    Mathematically one batched matmul; the layout is chosen for speed. MKL's
    batched GEMM writing a narrow output, such as the 10 class scores of the
    benchmark MLP (K=16, N=64, 128 -> 10), ran at 27 GFLOP/s on 2 CPU cores
    against about 100 transposed (``w.mT @ h.mT``, whose output is 64 wide).
    """
    if not _narrow(w):
        return torch.baddbmm(b, h, w)
    if torch.is_grad_enabled() and (h.requires_grad or w.requires_grad or b.requires_grad):
        return _Affine.apply(h, w, b)
    return _transposed(h, w, b)


def _transposed(h, w, b):
    """``h @ w + b`` as ``(w.mT @ h.mT + b.mT).mT``, made contiguous for the loss."""
    return torch.baddbmm(b.mT, w.mT, h.mT).mT.clone(memory_format=torch.contiguous_format)


class _Affine(torch.autograd.Function):
    """``affine`` with its gradients laid out the same way. Autograd's own backward of
    the transposed product hands the layer below a transposed gradient, on which
    the ReLU's backward ran 5x slower, and computes the weight gradient in the
    slow layout. The backward is made of differentiable operations on the inputs,
    so double backward and ``torch.func`` work; ``tests/test_sweep.py`` checks
    them against autograd's."""

    generate_vmap_rule = True

    @staticmethod
    def forward(h, w, b):
        return _transposed(h, w, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:2])

    @staticmethod
    def backward(ctx, g):
        h, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        return (torch.bmm(g, w.mT) if need[0] else None,
                torch.bmm(g.mT, h).mT if need[1] else None,
                g.sum(1, keepdim=True) if need[2] else None)


def _kept(scratch, key, shape, like):
    """Memory of ``shape``, with ``like``'s dtype and device, from ``scratch`` (a dict):
    made once, and again only when shape, dtype or device change; fresh memory when
    ``scratch`` is None."""
    shape = torch.Size(shape)
    if scratch is None:
        return like.new_empty(shape)
    kept = scratch.get(key)
    if kept is None or (kept.shape, kept.dtype, kept.device) != (shape, like.dtype, like.device):
        kept = scratch[key] = like.new_empty(shape)
    return kept


def _softmax_parts(out):
    """exp(out - max) over the class axis, its sum and the max, for the cross-entropy."""
    top = out.amax(-1, keepdim=True)
    e = (out - top).exp_()
    return e, e.sum(-1, keepdim=True), top


def _cross_entropy_grad(e, total, y, scale):
    """``(softmax(out) - onehot(y)) * scale``, per model, from ``_softmax_parts``."""
    d = (e / total).scatter_add_(-1, y[..., None], torch.full_like(y[..., None], -1.0,
                                                                    dtype=e.dtype))
    return d.mul_(scale[:, None, None])


class CrossEntropy(torch.autograd.Function):
    """Per-model mean cross-entropy of scores ``out`` (K, N, C) against classes ``y``
    (K, N): ``logsumexp(out) - out[y]``, ``F.cross_entropy`` to rounding, with its
    gradient written out, ``(softmax(out) - onehot(y)) / N``.

    ``F.log_softmax`` is slow on CPU over a short class axis; the logsumexp form
    was about 7% faster on the sweep of ``benchmarks/roofline.py``, and this one
    about 4% faster again (best of 12 interleaved sweeps: 0.321 s against 0.335 s),
    as autograd's backward of it took a dozen small operations a step. When the
    backward is itself differentiated (``create_graph=True``, e.g. a gradient
    penalty), the gradient is built from ``softmax(out)`` with differentiable
    operations instead.
    """

    @staticmethod
    def forward(ctx, out, y):
        e, total, top = _softmax_parts(out)
        ctx.save_for_backward(out, y, e, total)
        return (total.log() + top - out.gather(-1, y[..., None]))[..., 0].mean(1)

    @staticmethod
    def backward(ctx, g):
        out, y, e, total = ctx.saved_tensors
        scale = g / out.shape[1]
        if torch.is_grad_enabled():  # differentiable, for a second derivative
            onehot = torch.zeros_like(out).scatter_(-1, y[..., None], 1.0)
            return (torch.softmax(out, -1) - onehot) * scale[:, None, None], None
        return _cross_entropy_grad(e, total, y, scale), None


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
        # on the models' device, like every parameter: a stack of GPU models needs no .to()
        self.register_buffer("p", p.to(next(models[0].parameters()).device))
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
        return cls(seeded(build, seeds), dropout=dropout)

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

    def _inputs(self, x):
        """``x`` as (K, N, in): a batch shared by all models, or one per model."""
        if x.ndim not in (2, 3) or x.shape[-1] != self.in_dim:
            raise ValueError(f"StackedMLP expects {self.in_dim} features, got {tuple(x.shape)}")
        return x.unsqueeze(0).expand(self.k, -1, -1) if x.ndim == 2 else x

    def forward(self, x, scratch=None):
        """The K models' scores ``(K, N, out)``. ``scratch``, a dict, is for passes
        without gradients over many chunks (``sweep``'s evaluation): the hidden layers
        write into its tensors, reused while their shapes hold, instead of into fresh
        memory for every chunk. Fresh memory of that size (2 MB) is a page fault per
        4 kB on first touch; evaluating 2,500 examples for the benchmark MLP took
        11.4 ms with reuse against 12.5 ms without (best of 40, interleaved)."""
        h = self._inputs(x)
        last = len(self.weights) - 1
        reuse = scratch is not None and not torch.is_grad_enabled()
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if reuse and i < last and not _narrow(w):
                out = _kept(scratch, i, (self.k, h.shape[1], w.shape[2]), h)
                h = torch.baddbmm(b, h, w, out=out)
            else:
                h = affine(h, w, b)
            if i == last:
                break
            if self.batchnorm:
                h = self._norm(h, i)
            h = torch.relu_(h)  # in place: the layer before does not need its output
            if self.training and self.any_dropout:
                keep = 1 - self.p[:, None, None]
                h = h * (torch.rand_like(h) < keep) / keep
        return h

    @torch.no_grad()
    def cross_entropy_grads(self, x, y, grads, scratch=None):
        """Write the gradients of the K models' mean cross-entropy on the batch
        ``(x, y)`` into ``grads`` (one tensor per parameter, ``parameters()`` order),
        with the backward pass written out, for a stack without batch norm (with or
        without dropout; in training mode dropout draws its masks as ``forward`` does).
        ``scratch``, a dict kept from step to step (``sweep_fit``'s), holds the memory
        the weight gradients are computed in before they are copied into ``grads``
        (views into the optimizer's buffer, which a batched matmul writes slowly):
        the same memory every step, warm in cache. Sweeps of the roofline benchmark,
        10 interleaved pairs in one process, with against without it: median time
        ratio 0.93 with freed memory kept (runtime.KEEP_FREED_MEMORY), 0.87 without.

        The operations are autograd's for ``forward`` and ``CrossEntropy``, in the
        same order, so the gradients are identical (``tests/test_sweep.py`` checks
        a sweep bit for bit, on CPU); what goes is autograd's bookkeeping (the backward of
        one small matmul alone costs about 30 us on 2 cores). The sweep of
        ``benchmarks/roofline.py`` took 0.282 s against 0.338 s with autograd
        (best of 12 interleaved pairs; median ratio of the pairs 0.88).
        """
        if self.batchnorm:
            raise ValueError("cross_entropy_grads is for stacks without batch norm")
        h = self._inputs(x)
        inputs, relus, masks, last = [], [], [], len(self.weights) - 1
        dropout = self.training and self.any_dropout
        keep = 1 - self.p[:, None, None] if dropout else None  # no extra op on plain steps
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            inputs.append(h)
            h = affine(h, w, b)
            if i < last:
                h = torch.relu_(h)
                relus.append(h)
                if dropout:  # as forward: the same draws, in the same order
                    masks.append(torch.rand_like(h) < keep)
                    h = h * masks[-1] / keep
        y = y.expand(self.k, -1) if y.ndim == 1 else y
        e, total, _ = _softmax_parts(h)
        scale = torch.ones(self.k, device=h.device, dtype=h.dtype) / h.shape[1]
        g = _cross_entropy_grad(e, total, y, scale)
        for i in range(last, -1, -1):
            a, w = inputs[i], self.weights[i]
            if _narrow(w):
                grads[i].copy_(torch.bmm(g.mT, a).mT)
            else:  # in kept memory, except under mixed precision, where autocast picks the
                # product's dtype (an out= tensor would have to match it)
                kept = a.dtype == g.dtype == w.dtype and \
                    not torch.is_autocast_enabled(a.device.type)
                grads[i].copy_(torch.bmm(
                    a.mT, g, out=_kept(scratch, ("wgrad", i), w.shape, w) if kept else None))
            torch.sum(g, 1, keepdim=True, out=grads[len(self.weights) + i])
            if i:
                g = torch.bmm(g, w.mT)
                if dropout:  # autograd's order: the division's backward, then the mask's
                    g = g.div_(keep).mul_(masks[i - 1])
                # ReLU's backward: zero where its output was not positive
                g = relu_backward(g, relus[i - 1])

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
