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
    """Conv blocks (3x3 conv, [BatchNorm2d], ReLU, 2x2 max-pool), then global
    average pooling, [Dropout] and a linear classifier."""

    def __init__(self, in_channels, num_classes, widths=(16, 32), dropout=0.0, batchnorm=False):
        widths = list(widths)
        _check_widths("in_channels/num_classes", [in_channels, num_classes])
        _check_widths("widths", widths)
        p = check_dropout(dropout)
        layers, c = [], in_channels
        for w in widths:
            layers.append(nn.Conv2d(c, w, 3, padding=1, bias=not batchnorm))
            if batchnorm:
                layers.append(nn.BatchNorm2d(w))
            layers += [nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if p > 0:
            layers.append(nn.Dropout(p))
        layers.append(nn.Linear(c, num_classes))
        super().__init__(*layers)
        self.in_channels = in_channels

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"CNN expects input of shape (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        return super().forward(x)


def count_params(model):
    return sum(p.numel() for p in model.parameters())
