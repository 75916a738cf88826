"""Small models: an MLP and a CNN, each with optional dropout and batch norm."""
import math

from torch import nn

__all__ = ["MLP", "CNN", "check_dropout", "count_params"]


def check_dropout(p):
    """Raise a clear error unless ``p`` is a probability in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0 \
            or math.isnan(p):
        raise ValueError(f"dropout p must be in [0, 1), got {p!r} "
                         "(p is the probability of dropping a unit; p=1 would drop them all)")
    return float(p)


def _check_widths(name, widths):
    if any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"{name} must be positive ints, got {widths!r}")


class MLP(nn.Sequential):
    """``in_dim -> hidden... -> out_dim`` with ReLU; each hidden layer is
    Linear, [BatchNorm1d], ReLU, [Dropout]. Inputs of any shape are flattened.
    """

    def __init__(self, in_dim, hidden, out_dim, dropout=0.0, batchnorm=False):
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        _check_widths("in_dim/out_dim", [in_dim, out_dim])
        _check_widths("hidden widths", hidden)
        p = check_dropout(dropout)
        layers, width = [nn.Flatten()], in_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if p > 0:
                layers.append(nn.Dropout(p))
            width = h
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)
        self.in_dim = in_dim

    def forward(self, x):
        if math.prod(x.shape[1:]) != self.in_dim:
            raise ValueError(f"MLP expects {self.in_dim} features per example, "
                             f"got input of shape {tuple(x.shape)}")
        return super().forward(x)


class CNN(nn.Sequential):
    """Conv blocks (conv, [BatchNorm], ReLU, max-pool by 2), then global average
    pooling, [Dropout] and a linear classifier.

    ``dims=2`` (the default): images ``(N, C, H, W)`` through Conv2d, BatchNorm2d,
    MaxPool2d. ``dims=1``: signals ``(N, C, L)`` through Conv1d, BatchNorm1d,
    MaxPool1d; with ``in_channels=1`` it also takes ``(N, L)`` (one channel,
    e.g. MNIST-1D's ``(N, 40)`` as it is), so ``fit`` and ``sweep_fit`` need no
    reshaping. ``kernel`` is the (odd) kernel size; padding keeps the length.
    ``example_ndim`` is the number of axes of one example (``dims + 1``).
    """

    def __init__(self, in_channels, num_classes, widths=(16, 32), dropout=0.0, batchnorm=False,
                 dims=2, kernel=3):
        widths = list(widths)
        _check_widths("in_channels/num_classes", [in_channels, num_classes])
        _check_widths("widths", widths)
        if dims not in (1, 2) or isinstance(dims, bool):
            raise ValueError(f"dims must be 1 (signals) or 2 (images), got {dims!r}")
        if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 \
                or kernel % 2 == 0:
            raise ValueError(f"kernel must be an odd positive int, got {kernel!r}")
        p = check_dropout(dropout)
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        pool, avg = (nn.MaxPool1d, nn.AdaptiveAvgPool1d) if dims == 1 else \
            (nn.MaxPool2d, nn.AdaptiveAvgPool2d)
        layers, c = [], in_channels
        for w in widths:
            layers.append(conv(c, w, kernel, padding=kernel // 2, bias=not batchnorm))
            if batchnorm:
                layers.append(norm(w))
            layers += [nn.ReLU(), pool(2, ceil_mode=True)]
            c = w
        layers += [avg(1), nn.Flatten()]
        if p > 0:
            layers.append(nn.Dropout(p))
        layers.append(nn.Linear(c, num_classes))
        super().__init__(*layers)
        self.in_channels, self.dims, self.example_ndim = in_channels, dims, dims + 1

    def forward(self, x):
        return super().forward(self.prepare(x))

    def prepare(self, x):
        """``x`` as ``(N, C, ...)``, or a clear error for an input of the wrong shape."""
        if self.dims == 1 and self.in_channels == 1 and x.ndim == 2:
            x = x.unsqueeze(1)  # (N, L): one channel
        if x.ndim != self.dims + 2 or x.shape[1] != self.in_channels:
            shape = "H, W" if self.dims == 2 else "L"
            also = " or (N, L)" if self.dims == 1 and self.in_channels == 1 else ""
            raise ValueError(f"CNN(dims={self.dims}) expects input of shape "
                             f"(N, {self.in_channels}, {shape}){also}, got {tuple(x.shape)}")
        return x


def count_params(model):
    return sum(p.numel() for p in model.parameters())
