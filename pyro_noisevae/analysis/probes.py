"""What a representation knows about the labels: a linear probe (multinomial logistic regression), k-NN accuracy."""

import math
import numbers

import torch

from .._checks import check_tensor

__all__ = ["LinearProbe", "fit_linear_probe", "knn_accuracy"]


def _check_features_labels(features, labels, name="features"):
    check_tensor(features, name, min_dim=2)
    if features.dim() != 2:
        raise ValueError(f"{name} must have shape (N, F), got {tuple(features.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.long:
        raise TypeError("labels must be a torch.long tensor of class indices")
    if labels.shape != features.shape[:1]:
        raise ValueError(f"labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("labels must be >= 0")


class LinearProbe(torch.nn.Module):
    r"""
    A fitted multinomial logistic regression :math:`p(c \mid f) = \mathrm{softmax}(W \tilde f + b)_c` on features
    :math:`\tilde f = (f - m) / s` (:math:`m = 0, s = 1` unless fitted with ``standardize=True``).
    Build it with :func:`fit_linear_probe`.

    :param torch.Tensor weight: ``(C, F)``.
    :param torch.Tensor bias: ``(C,)``.
    :param torch.Tensor shift: ``(F,)`` standardization offset.
    :param torch.Tensor scale: ``(F,)`` standardization scale.
    """

    def __init__(self, weight, bias, shift, scale):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)

    def forward(self, features):
        """Logits ``(N, C)`` for features ``(N, F)``."""
        check_tensor(features, "features", min_dim=2)
        if features.shape[-1] != self.weight.shape[1]:
            raise ValueError(f"features have {features.shape[-1]} columns, the probe expects {self.weight.shape[1]}")
        f = (features.to(self.weight.dtype) - self.shift) / self.scale
        return f @ self.weight.T + self.bias

    @torch.no_grad()
    def predict(self, features):
        """Most probable class ``(N,)`` (long)."""
        return self(features).argmax(-1)

    @torch.no_grad()
    def accuracy(self, features, labels):
        """Fraction of ``labels (N,)`` predicted correctly from ``features (N, F)``."""
        _check_features_labels(features, labels)
        return float((self.predict(features) == labels.to(features.device)).double().mean())


def fit_linear_probe(features, labels, num_classes=None, l2=1e-4, max_iter=200, standardize=False, dtype=torch.float64):
    r"""
    Fit a multinomial logistic regression by full-batch L-BFGS on

    .. math:: \frac1N \sum_n -\log \mathrm{softmax}(W \tilde f_n + b)_{c_n} + \frac{\lambda}{2} \lVert W \rVert_F^2 .

    The objective is strictly convex for :math:`\lambda > 0`, so the fit does not depend on initialization.

    :param torch.Tensor features: ``(N, F)`` training features (e.g. clean-data posterior means, or pixels).
    :param torch.Tensor labels: ``(N,)`` long class indices.
    :param int num_classes: C (default ``labels.max() + 1``).
    :param float l2: :math:`\lambda > 0`.
    :param bool standardize: z-score each feature with the training mean/std first. Off by default: a feature
        that is nearly constant in the (clean) training set would otherwise amplify test-time noise.
    :rtype: LinearProbe
    """
    _check_features_labels(features, labels)
    if not (isinstance(l2, numbers.Real) and l2 > 0 and math.isfinite(l2)):
        raise ValueError(f"l2 must be a finite number > 0, got {l2!r}")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if int(labels.max()) >= num_classes:
        raise ValueError(f"labels go up to {int(labels.max())} but num_classes={num_classes}")
    f = features.detach().to(dtype)
    y = labels.to(f.device)
    if standardize:
        shift, scale = f.mean(0), f.std(0, correction=0).clamp_min(1e-6)
    else:
        shift, scale = f.new_zeros(f.shape[1]), f.new_ones(f.shape[1])
    f = (f - shift) / scale
    weight = f.new_zeros(num_classes, f.shape[1], requires_grad=True)
    bias = f.new_zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(f @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(weight.detach(), bias.detach(), shift, scale)


@torch.no_grad()
def knn_accuracy(train_features, train_labels, test_features, test_labels, k=5, chunk_size=1000):
    r"""
    Accuracy of a :math:`k`-nearest-neighbour classifier (Euclidean distance, majority vote; a tied vote goes
    to the lowest class index).

    :param torch.Tensor train_features: ``(N, F)``; ``train_labels``: ``(N,)`` long.
    :param torch.Tensor test_features: ``(M, F)``; ``test_labels``: ``(M,)`` long.
    :param int k: number of neighbours (``1 <= k <= N``).
    :returns: float in [0, 1].
    """
    _check_features_labels(train_features, train_labels, "train_features")
    _check_features_labels(test_features, test_labels, "test_features")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError("train and test features must have the same number of columns")
    if not (isinstance(k, numbers.Integral) and 1 <= k <= train_features.shape[0]):
        raise ValueError(f"k must be an integer in [1, {train_features.shape[0]}], got {k!r}")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    train_labels = train_labels.to(train_features.device)
    correct = 0
    for start in range(0, test_features.shape[0], chunk_size):
        q = test_features[start : start + chunk_size].to(train_features.dtype)
        d = torch.cdist(q, train_features)
        idx = d.topk(k, largest=False).indices
        votes = torch.nn.functional.one_hot(train_labels[idx], num_classes).sum(1)
        pred = votes.argmax(-1)
        correct += int((pred.cpu() == test_labels[start : start + chunk_size].cpu()).sum())
    return correct / test_features.shape[0]
