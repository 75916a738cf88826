"""One plain training loop: ``fit(model, data, config) -> History``."""
import copy
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .runtime import generator, no_host_sync

__all__ = ["FitConfig", "History", "DivergenceError", "fit", "evaluate", "loss_fn",
           "FusedOptimizer", "fused_update", "make_optimizer", "progress_bar"]

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class FitConfig:
    """Everything ``fit`` needs besides the model and the data.

    Change one field for an ablation: ``dataclasses.replace(cfg, weight_decay=1e-3)``.

    penalty:    ``penalty(model) -> scalar`` added to each batch's loss (e.g. an L1 term).
    after_step: ``after_step(model, lr)`` run after every optimizer step (e.g. a proximal step).
    augment:    ``augment(x, generator) -> x`` applied to every training batch.
    transform:  ``transform(x, y, generator) -> (x, y)`` applied to every training batch
                after ``augment``; it may return ``y`` as class probabilities, shape
                ``(N, C)``, for soft targets (label smoothing, mixup).
    lr_schedule: ``lr_schedule(epoch) -> factor``; the learning rate of epoch ``e`` is
                ``lr * lr_schedule(e)``.
    monitor:    what "better" means for ``best_epoch`` and early stopping: a lower
                ``"val_loss"`` or a higher ``"val_acc"``.
    patience:   stop after this many epochs without a better monitored value
                (``None``: never stop early); ``restore_best`` then reloads the best weights.
    seed:       local seed of the shuffles and augmentation draws (``LABKIT_SEED`` shifts it).
    curves:     the splits evaluated at the end of every epoch, ``("train", "val")`` or
                fewer. A split left out costs nothing and reads NaN in the history; a run
                that needs only its final model (``labkit.ledger``) saves the passes over
                the training set. Without the monitored split, ``best_epoch`` is the last
                epoch, and early stopping (``patience``) needs it. Without ``"train"``, a
                run has diverged when its weights, its buffers (batch-norm statistics)
                or its validation loss are not finite.
    curves_at:  ``"every epoch"``, or ``"last epoch"`` for a run that reads only its
                final values (``history.last``): the curves are evaluated after the
                last epoch alone and read NaN before it, the training is the same (no
                ``patience``: early stopping watches every epoch).
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    loss: str = "auto"
    monitor: str = "val_loss"
    patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    lr_schedule: Callable[[int], float] | None = None
    penalty: Callable[[nn.Module], torch.Tensor] | None = None
    after_step: Callable[[nn.Module, float], None] | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    transform: Callable | None = None
    seed: int = 0
    progress: bool = True
    desc: str = "fit"
    curves: tuple = ("train", "val")
    curves_at: str = "every epoch"

    def __post_init__(self):
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 1, "epochs must be an int >= 1"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1,
             "batch_size must be an int >= 1"),
            (self.lr > 0 and math.isfinite(self.lr), "lr must be a positive finite number"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.weight_decay >= 0, "weight_decay must be >= 0 (a negative decay grows "
                                     "the weights instead of shrinking them)"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.loss in ("auto", "cross_entropy", "mse"),
             "loss must be 'auto', 'cross_entropy' or 'mse'"),
            (self.monitor in ("val_loss", "val_acc"), "monitor must be 'val_loss' or 'val_acc'"),
            (self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
             "patience must be None or an int >= 1"),
            (isinstance(self.curves, (tuple, list)) and set(self.curves) <= {"train", "val"},
             "curves must be a tuple of 'train' and/or 'val'"),
            (self.curves_at in ("every epoch", "last epoch"),
             "curves_at must be 'every epoch' or 'last epoch'"),
            (self.patience is None or self.curves_at == "every epoch",
             "early stopping (patience) watches every epoch: curves_at='every epoch'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"FitConfig: {message}; got {self!r}")
        object.__setattr__(self, "curves", tuple(self.curves))  # frozen, hashable


@dataclass
class History:
    """Per-epoch curves of one run. ``best_epoch`` is the best by ``FitConfig.monitor``."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    seconds: float = 0.0

    def at(self, epoch):
        """The recorded values of one epoch, as a dict."""
        i = self.epoch.index(epoch)
        return {k: getattr(self, k)[i] for k in
                ("train_loss", "train_acc", "val_loss", "val_acc", "lr")}

    @property
    def best(self):
        return self.at(self.best_epoch)

    @property
    def last(self):
        return self.at(self.epoch[-1])


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss (or, when the training loss is not evaluated,
    non-finite weights or statistics). ``.history`` holds every epoch before it."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


def loss_fn(name, num_classes):
    if name == "auto":
        name = "cross_entropy" if num_classes else "mse"
    return F.cross_entropy if name == "cross_entropy" else F.mse_loss


def check_monitor(config, loss):
    if config.monitor == "val_acc" and loss is not F.cross_entropy:
        raise ValueError("monitor='val_acc' needs a classification task (cross-entropy loss)")


def monitored_split(config, val):
    """The split early stopping watches: ``"val"``, or ``"train"`` when ``val`` is empty;
    None when ``config.curves`` leaves it out (then ``patience`` is an error)."""
    split = "val" if len(val) else "train"
    if split in config.curves:
        return split
    if config.patience is not None:
        why = "" if split == "val" else " (the validation split is empty)"
        raise ValueError(f"early stopping (patience={config.patience}) watches the {split} "
                         f"split every epoch{why}, but curves={tuple(config.curves)} "
                         "leaves it out")
    return None


def curves_now(config, epoch):
    """The splits evaluated at the end of ``epoch``: ``config.curves``, or none before
    the last epoch when ``config.curves_at`` is ``"last epoch"``."""
    last = config.curves_at == "every epoch" or epoch == config.epochs - 1
    return config.curves if last else ()


def score(config, train_metrics, val_metrics):
    """What early stopping minimises: the validation loss, or minus the validation
    accuracy; the training metrics stand in when there is no validation split."""
    loss, acc = val_metrics if val_metrics is not None else train_metrics
    return -acc if config.monitor == "val_acc" else loss


ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim's defaults


def fused_update(config, params, grads, state, lr, weight_decay, step_count=None):
    """One step of the kernel ``torch.optim`` runs with ``fused=True`` for
    ``config.optimizer``, on lists of tensors that share ``lr`` and ``weight_decay``.

    ``state`` is ``[momentum buffers]`` for SGD (an empty list without momentum)
    or ``[exp_avgs, exp_avg_sqs]`` for Adam and AdamW, whose ``step_count`` (a
    0-d tensor) the caller has already advanced. Momentum buffers start at zero:
    ``momentum * 0 + g = g`` exactly, which is ``torch.optim``'s first step.
    """
    if config.optimizer == "sgd":
        torch._fused_sgd_(params, grads, state[0], weight_decay=weight_decay,
                          momentum=config.momentum, lr=lr, dampening=0.0, nesterov=False,
                          maximize=False, is_first_step=False)
        return
    kernel = torch._fused_adamw_ if config.optimizer == "adamw" else torch._fused_adam_
    kernel(params, grads, *state, [], [step_count] * len(params), amsgrad=False, lr=lr,
           beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], weight_decay=weight_decay,
           eps=ADAM_EPS, maximize=False)


class FusedOptimizer:
    """SGD (with momentum), Adam or AdamW through the kernels ``torch.optim`` runs with
    ``fused=True``, called directly.

    The arithmetic is ``torch.optim``'s (``tests/test_train.py`` checks that the
    weights are identical); what goes is its per-step Python bookkeeping (hooks,
    grouping tensors, state lookups), about a fifth of a step of the benchmark
    MLP on 2 CPU cores (``benchmarks/fit_throughput.py``). One parameter group;
    set ``param_groups[0]["lr"]`` to change the learning rate.
    """

    def __init__(self, params, config):
        self.params = [p for p in params if p.requires_grad]
        self.config = config
        self.param_groups = [{"lr": config.lr}]
        self.step_count = None
        if config.optimizer == "sgd":  # zero buffers: see fused_update
            self.state = [[torch.zeros_like(p) for p in self.params]] \
                if config.momentum > 0 else [[]]
        else:
            self.state = [[torch.zeros_like(p) for p in self.params] for _ in range(2)]
            self.step_count = torch.zeros((), dtype=torch.float32, device=self.params[0].device)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        cfg, lr = self.config, self.param_groups[0]["lr"]
        keep = [i for i, p in enumerate(self.params) if p.grad is not None]
        if len(keep) < len(self.params):  # torch.optim skips parameters without a gradient
            params = [self.params[i] for i in keep]
            state = [[s[i] for i in keep] if s else s for s in self.state]
        else:
            params, state = self.params, self.state
        if cfg.optimizer != "sgd":
            self.step_count.add_(1)
        fused_update(cfg, params, [p.grad for p in params], state, lr, cfg.weight_decay,
                     self.step_count)


def make_optimizer(model, config):
    """``FusedOptimizer`` where the device has the fused kernels (CPU, CUDA, MPS), else
    ``torch.optim``'s SGD, Adam or AdamW."""
    params, wd = [p for p in model.parameters() if p.requires_grad], config.weight_decay
    if params and params[0].device.type in ("cpu", "cuda", "mps"):
        return FusedOptimizer(params, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=wd)


@torch.no_grad()
def evaluate(model, split, loss=F.cross_entropy, chunk=8192):
    """Mean loss and accuracy (None for regression) of ``model`` on ``split``, in eval mode.

    Returns tensors; nothing is synchronised.
    """
    was_training = model.training
    model.eval()
    outs = [model(split.x[i:i + chunk]) for i in range(0, len(split), chunk)]
    model.train(was_training)
    out = torch.cat(outs)
    acc = (out.argmax(1) == split.y).float().mean() if loss is F.cross_entropy else None
    return loss(out, split.y), acc


def _check_inputs(model, data, loss):
    train = data.train
    if len(train) == 0:
        raise ValueError("the training split is empty")
    if loss is F.cross_entropy:
        if train.y.dtype != torch.long or train.y.ndim != 1:
            raise ValueError(f"classification targets must be a 1-D long tensor, got "
                             f"{train.y.dtype} of shape {tuple(train.y.shape)}")
        lo, hi = int(train.y.min()), int(train.y.max())
        if lo < 0 or (data.num_classes and hi >= data.num_classes):
            raise ValueError(f"labels must be in [0, {data.num_classes}), got [{lo}, {hi}]")
    with torch.no_grad():
        was_training = model.training
        model.eval()
        out = model(train.x[:2])
        model.train(was_training)
    if loss is F.cross_entropy and (out.ndim != 2 or (data.num_classes or 0) > out.shape[1]):
        raise ValueError(f"the model gives outputs of shape {tuple(out.shape)}, expected "
                         f"(N, {data.num_classes}) class scores")
    if loss is F.mse_loss and out.shape != train.y[:2].shape:
        raise ValueError(f"the model gives outputs of shape {tuple(out.shape)} but targets "
                         f"have shape {tuple(train.y[:2].shape)}")
    for name, p in model.named_parameters():
        if p.device != train.x.device:
            raise ValueError(f"parameter {name} is on {p.device} but the data is on "
                             f"{train.x.device}; move the model with model.to(device)")


def progress_bar(config):
    """A tqdm.auto bar over the epochs; ``TQDM_DISABLE=1`` hides it (``make book`` sets it)."""
    # tqdm's notebook bar ignores TQDM_DISABLE by itself, so it is read here
    hide = not config.progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return tqdm(range(config.epochs), desc=config.desc, leave=False, disable=hide)


def fit(model, data, config=FitConfig()):
    """Train ``model`` on ``data.train``, recording curves on train and ``data.val``
    (those that ``config.curves`` names).

    Data stays on its device; batches are slices of a shuffled index, and the
    only host syncs happen once per epoch.
    """
    loss = loss_fn(config.loss, data.num_classes)
    _check_inputs(model, data, loss)
    check_monitor(config, loss)
    train, val = data.train, data.val
    watched = monitored_split(config, val)
    opt = make_optimizer(model, config)
    g = generator(config.seed)  # shuffles and augmentation draws; shifts with LABKIT_SEED
    hist, best_score, best_state, bad_epochs = History(), math.inf, None, 0
    start = time.perf_counter()
    bar = progress_bar(config)
    for epoch in bar:
        lr = config.lr * (config.lr_schedule(epoch) if config.lr_schedule else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(len(train), generator=g).to(train.x.device)
        xs, ys = train.x[order], train.y[order]  # one gather per epoch; batches are views
        with no_host_sync(train.x.device):
            for i in range(0, len(train), config.batch_size):
                x, y = xs[i:i + config.batch_size], ys[i:i + config.batch_size]
                if config.augment is not None:
                    x = config.augment(x, g)
                if config.transform is not None:
                    x, y = config.transform(x, y, g)
                batch_loss = loss(model(x), y)
                if config.penalty is not None:
                    batch_loss = batch_loss + config.penalty(model)
                opt.zero_grad(set_to_none=True)
                batch_loss.backward()
                opt.step()
                if config.after_step is not None:
                    config.after_step(model, lr)
        skipped, now = (None, None), curves_now(config, epoch)
        tr_loss, tr_acc = evaluate(model, train, loss) if "train" in now else skipped
        va_loss, va_acc = evaluate(model, val, loss) if len(val) and "val" in now else skipped
        values = [v.item() if v is not None else math.nan
                  for v in (tr_loss, tr_acc, va_loss, va_acc)]
        # the training loss if it is evaluated, else the weights and buffers (batch
        # norm's statistics can overflow while the weights stay finite) and the
        # validation loss if it is evaluated
        if tr_loss is not None:
            finite, what = math.isfinite(values[0]), f"the training loss is {values[0]}"
        else:
            state = [t for t in model.state_dict().values() if t.is_floating_point()]
            finite = bool(torch.stack([torch.isfinite(t).all() for t in state]).all()) and \
                (va_loss is None or math.isfinite(values[2]))
            what = "the weights, batch-norm statistics or validation loss are not finite"
        if not finite:
            hist.seconds = time.perf_counter() - start
            raise DivergenceError(
                f"training diverged at epoch {epoch}: {what}. "
                f"Try a smaller lr (now {lr:g}). The curves so far are in .history.", hist)
        for key, v in zip(("train_loss", "train_acc", "val_loss", "val_acc"), values):
            getattr(hist, key).append(v)
        hist.epoch.append(epoch)
        hist.lr.append(lr)
        bar.set_postfix(train=f"{values[0]:.3f}", val=f"{values[2]:.3f}", refresh=False)
        # nothing watched (at this epoch): the last epoch is the best known
        scored = watched in now
        monitored = score(config, values[:2], values[2:] if len(val) else None) \
            if scored else best_score
        if not scored or monitored < best_score - config.min_delta:
            best_score, hist.best_epoch, bad_epochs = monitored, epoch, 0
            if config.patience is not None and config.restore_best:
                best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if config.patience is not None and bad_epochs >= config.patience:
                hist.stopped_early = True
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    hist.seconds = time.perf_counter() - start
    return hist
