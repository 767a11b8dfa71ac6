"""Measurements on trained VAEs: analytic KL, power-law fits with bootstrap intervals, active units, probes, PSNR."""

import math
import numbers
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats
from torch.distributions import Normal, kl_divergence

__all__ = [
    "BrokenPowerLawFit",
    "LinearProbe",
    "PowerLawFit",
    "active_units",
    "fit_broken_power_law",
    "fit_linear_probe",
    "fit_power_law",
    "gaussian_kl_standard_normal",
    "knn_accuracy",
    "local_exponents",
    "mse",
    "psnr",
]


# ----------------------------------------------------------------------------------------------------------
# KL and active units
# ----------------------------------------------------------------------------------------------------------


def _check_tensor(x, name, min_dim=1):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def gaussian_kl_standard_normal(loc, scale, reduce=True):
    r"""
    Analytic KL divergence of a diagonal Gaussian from the standard normal prior:

    .. math:: \mathrm{KL}\big(N(\mu, \mathrm{diag}\, s^2)\,\|\,N(0, I)\big)
              = \tfrac12 \sum_j \big(\mu_j^2 + s_j^2 - 1 - \log s_j^2\big).

    :param torch.Tensor loc: :math:`\mu`, shape ``(*, z_dim)``.
    :param torch.Tensor scale: :math:`s > 0`, shape broadcastable with ``loc``.
    :param bool reduce: sum over the last (latent) dimension (default); otherwise return the per-dimension
        terms, shape ``(*, z_dim)``.
    :returns: ``(*,)`` (or ``(*, z_dim)`` when ``reduce=False``), in nats.
    :raises ValueError: if ``scale`` has a non-positive entry or either input is not finite.
    """
    _check_tensor(loc, "loc")
    _check_tensor(scale, "scale", min_dim=0)
    if bool((scale <= 0).any()):
        raise ValueError("scale must be > 0 everywhere (it is a standard deviation, not a log-scale)")
    loc, scale = torch.broadcast_tensors(loc, scale)
    per_dim = kl_divergence(Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(scale)))
    return per_dim.sum(-1) if reduce else per_dim


def active_units(locs, threshold=0.01):
    r"""
    Number of active latent units (Burda et al., 2015): dimension :math:`j` is active when the posterior mean
    varies across data, :math:`A_j = \mathrm{Var}_x\big(E_{q(z|x)}[z_j]\big) > \delta`.

    :param torch.Tensor locs: posterior means :math:`E_q[z|x_n]`, shape ``(N, z_dim)`` with ``N >= 2``.
    :param float threshold: :math:`\delta` (default 0.01).
    :returns: ``(count, variances)``: the number of active units (int) and :math:`A` of shape ``(z_dim,)``.
    """
    _check_tensor(locs, "locs", min_dim=2)
    if locs.dim() != 2 or locs.shape[0] < 2:
        raise ValueError(f"locs must have shape (N, z_dim) with N >= 2, got {tuple(locs.shape)}")
    if not (isinstance(threshold, numbers.Real) and threshold >= 0):
        raise ValueError(f"threshold must be a real number >= 0, got {threshold!r}")
    var = locs.var(0, correction=0)
    return int((var > threshold).sum()), var


# ----------------------------------------------------------------------------------------------------------
# power laws
# ----------------------------------------------------------------------------------------------------------


def _check_xy(x, y):
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same number of points, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"a power-law fit needs at least 3 points, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError(
            "x and y must be > 0 for a log-log fit; drop points with y <= 0 (e.g. a KL that collapsed to 0)"
        )
    if np.unique(x).size < 2:
        raise ValueError("x needs at least two distinct values")
    return x, y


def _slope(u, v, axis=-1):
    """Least-squares slope of ``v`` on ``u`` along ``axis``; NaN where all ``u`` are equal.

    The statistic :func:`scipy.stats.bootstrap` evaluates on a whole batch of replicates at once
    (``linregress`` fits one line per Python call). A constant ``u`` is told by its range, not by
    :math:`S_{uu} > 0`: the rounded mean of equal values can leave a tiny :math:`S_{uu}` and a meaningless slope.
    """
    du, dv = u - u.mean(axis, keepdims=True), v - v.mean(axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.ptp(u, axis=axis) > 0, (du * dv).sum(axis) / (du * du).sum(axis), np.nan)


def _bootstrap_slopes(data, statistic, num_bootstrap, paired, rng):
    """``num_bootstrap`` finite bootstrap replicates of ``statistic``, drawn by :func:`scipy.stats.bootstrap`.

    Pairs resamples with a single distinct abscissa have no slope: they are redrawn, so the interval is
    conditional on a defined slope (frequent only for a handful of points, e.g. 1 in 9 for 3 points). The
    caller takes the percentile interval of these replicates, as scipy's ``method="percentile"`` does, but
    without the undefined ones (scipy's own interval, and its warning, would be NaN whenever one occurs).
    """
    slopes = np.empty(0)
    while slopes.size < num_bootstrap:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            res = stats.bootstrap(data, statistic, n_resamples=num_bootstrap, vectorized=True, paired=paired,
                                  method="percentile", rng=rng)
        b = res.bootstrap_distribution
        slopes = np.concatenate([slopes, b[np.isfinite(b)]])
    return slopes[:num_bootstrap]


@dataclass
class PowerLawFit:
    r"""
    Result of :func:`fit_power_law`, the model :math:`y = A\,x^{-\nu}`, i.e. :math:`\log y = \log A - \nu \log x`.

    :ivar float nu: least-squares exponent :math:`\nu` (minus the log-log slope).
    :ivar float log_amplitude: :math:`\log A` (natural log).
    :ivar float r2: coefficient of determination of the log-log line.
    :ivar tuple ci: bootstrap percentile interval of :math:`\nu` at level ``level``.
    :ivar tuple ci_t: classical OLS Student-t interval of :math:`\nu` at the same level (for comparison).
    :ivar float level: confidence level of the intervals.
    :ivar int n: number of points.
    :ivar int num_bootstrap: bootstrap replicates that entered the interval.
    """

    nu: float
    log_amplitude: float
    r2: float
    ci: tuple
    ci_t: tuple
    level: float
    n: int
    num_bootstrap: int

    def predict(self, x):
        """:math:`A x^{-\\nu}` at ``x`` (array-like), as a numpy array."""
        return np.exp(self.log_amplitude - self.nu * np.log(np.asarray(x, dtype=np.float64)))

    def to_dict(self):
        d = asdict(self)
        d["ci"], d["ci_t"] = list(self.ci), list(self.ci_t)
        return d


def fit_power_law(x, y, num_bootstrap=2000, level=0.95, seed=0, method="pairs"):
    r"""
    Fit :math:`y = A x^{-\nu}` by least squares in log-log space, :math:`\log y_i = \log A - \nu \log x_i + e_i`,
    with a bootstrap percentile confidence interval for :math:`\nu` and :math:`R^2` of the log-log line.

    Bootstrap ``method``:

    * ``"pairs"``: resample the points :math:`(x_i, y_i)` with replacement (robust to a misspecified line,
      e.g. a bending curve, which then shows up as a wide interval); replicates with fewer than two
      distinct :math:`x` are redrawn.
    * ``"residuals"``: keep :math:`x` fixed and resample the centred log-log residuals (assumes the line is right).

    The line, :math:`R^2` and the standard error of the slope are :func:`scipy.stats.linregress`'s; ``ci_t`` is the
    Student-t interval on that standard error (:data:`scipy.stats.t`); :func:`scipy.stats.bootstrap` draws the
    replicates, and ``ci`` is their percentile interval.

    :param x: positive abscissae, ``(n,)`` array-like with ``n >= 3`` (e.g. σ).
    :param y: positive ordinates, ``(n,)`` (e.g. the test-set average KL).
    :param int num_bootstrap: bootstrap replicates (>= 100).
    :param float level: confidence level in (0, 1).
    :param int seed: seed of the numpy generator used for resampling.
    :rtype: PowerLawFit
    """
    x, y = _check_xy(x, y)
    if not (isinstance(num_bootstrap, numbers.Integral) and num_bootstrap >= 100):
        raise ValueError(f"num_bootstrap must be an integer >= 100, got {num_bootstrap!r}")
    if not (isinstance(level, numbers.Real) and 0 < level < 1):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if method not in ("pairs", "residuals"):
        raise ValueError(f"method must be 'pairs' or 'residuals', got {method!r}")
    u, v = np.log(x), np.log(y)
    n = u.size
    line = stats.linregress(u, v)
    # a constant y lies exactly on its flat line: R^2 = 1 and a zero standard error, where linregress
    # reports the undefined correlation as r = 0 and its standard error as NaN
    flat = np.ptp(v) == 0
    r2, stderr = (1.0, 0.0) if flat else (line.rvalue**2, line.stderr)

    rng = np.random.default_rng(seed)
    if method == "pairs":
        slopes = _bootstrap_slopes((u, v), _slope, num_bootstrap, paired=True, rng=rng)
    else:
        fitted = line.intercept + line.slope * u
        resid = v - fitted

        def refit(r, axis=-1):  # the slope of the fitted line plus resampled residuals, at the same x
            return _slope(u, fitted + r, axis)

        slopes = _bootstrap_slopes((resid - resid.mean(),), refit, num_bootstrap, paired=False, rng=rng)
    alpha = 1.0 - level
    lo, hi = np.quantile(-slopes, [alpha / 2, 1 - alpha / 2])
    # Student-t interval from linregress's standard error (zero for points exactly on a line, where
    # scipy's t.interval would refuse the scale 0)
    half = stats.t.ppf(1 - alpha / 2, df=n - 2) * stderr
    return PowerLawFit(
        nu=float(-line.slope),
        log_amplitude=float(line.intercept),
        r2=float(r2),
        ci=(float(lo), float(hi)),
        ci_t=(float(-line.slope - half), float(-line.slope + half)),
        level=float(level),
        n=int(n),
        num_bootstrap=int(num_bootstrap),
    )


def local_exponents(x, y):
    r"""
    Local log-log exponents between neighbouring points (sorted by ``x``):
    :math:`\nu_{i+1/2} = -\dfrac{\log y_{i+1} - \log y_i}{\log x_{i+1} - \log x_i}`.

    A straight power law gives a constant sequence; a bend shows up as a drift.

    :returns: ``(x_mid, nu_local)``: geometric midpoints and exponents, each ``(n - 1,)``.
    """
    x, y = _check_xy(x, y)
    order = np.argsort(x)
    u, v = np.log(x[order]), np.log(y[order])
    du = np.diff(u)
    if (du == 0).any():
        raise ValueError("x values must be distinct for local exponents")
    return np.exp(0.5 * (u[1:] + u[:-1])), -np.diff(v) / du


@dataclass
class BrokenPowerLawFit:
    r"""
    Result of :func:`fit_broken_power_law`: two power laws joined at a break, each fitted on its own points.

    :ivar float x_break: geometric midpoint between the last point of the left segment and the first of the right.
    :ivar PowerLawFit left, right: the fits on :math:`x < x_\mathrm{break}` and :math:`x > x_\mathrm{break}`.
    :ivar float sse: total residual sum of squares (log-log) of the two segments.
    :ivar float sse_single: residual sum of squares of one line through all points.
    """

    x_break: float
    left: PowerLawFit
    right: PowerLawFit
    sse: float
    sse_single: float

    def to_dict(self):
        return {
            "x_break": self.x_break,
            "left": self.left.to_dict(),
            "right": self.right.to_dict(),
            "sse": self.sse,
            "sse_single": self.sse_single,
        }


def fit_broken_power_law(x, y, min_points=3, **kwargs):
    r"""
    Find the break of a bending log-log curve: over every split of the points sorted by ``x`` into a left and a
    right segment of at least ``min_points`` each, fit one line per segment and keep the split with the smallest
    total squared log-log residual.

    :param int min_points: smallest segment (>= 3, so that each segment has a residual).
    :param kwargs: passed to :func:`fit_power_law` for the two segments (bootstrap settings).
    :rtype: BrokenPowerLawFit
    :raises ValueError: if there are fewer than ``2 * min_points`` points.
    """
    x, y = _check_xy(x, y)
    if not (isinstance(min_points, numbers.Integral) and min_points >= 3):
        raise ValueError(f"min_points must be an integer >= 3, got {min_points!r}")
    if x.size < 2 * min_points:
        raise ValueError(f"need at least {2 * min_points} points for two segments of {min_points}, got {x.size}")
    order = np.argsort(x)
    x, y = x[order], y[order]
    u, v = np.log(x), np.log(y)

    def sse(uu, vv):
        if np.ptp(uu) == 0:  # a segment at one abscissa has no line: never the best split
            return math.inf
        line = stats.linregress(uu, vv)
        return float(((vv - line.intercept - line.slope * uu) ** 2).sum())

    best = None
    for k in range(min_points, x.size - min_points + 1):
        total = sse(u[:k], v[:k]) + sse(u[k:], v[k:])
        if best is None or total < best[0]:
            best = (total, k)
    total, k = best
    return BrokenPowerLawFit(
        x_break=float(math.exp(0.5 * (u[k - 1] + u[k]))),
        left=fit_power_law(x[:k], y[:k], **kwargs),
        right=fit_power_law(x[k:], y[k:], **kwargs),
        sse=total,
        sse_single=sse(u, v),
    )


# ----------------------------------------------------------------------------------------------------------
# probes
# ----------------------------------------------------------------------------------------------------------


def _check_features_labels(features, labels, name="features"):
    _check_tensor(features, name, min_dim=2)
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

    :param torch.Tensor weight: ``(C, F)``; :param torch.Tensor bias: ``(C,)``;
    :param torch.Tensor shift, scale: ``(F,)`` standardization.
    """

    def __init__(self, weight, bias, shift, scale):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)

    def forward(self, features):
        """Logits ``(N, C)`` for features ``(N, F)``."""
        _check_tensor(features, "features", min_dim=2)
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


# ----------------------------------------------------------------------------------------------------------
# image quality
# ----------------------------------------------------------------------------------------------------------


def _check_pair(estimate, target):
    _check_tensor(estimate, "estimate")
    _check_tensor(target, "target")
    if estimate.shape != target.shape:
        raise ValueError(f"estimate and target must have the same shape, got {tuple(estimate.shape)} and {tuple(target.shape)}")


def mse(estimate, target):
    r"""Per-image mean squared error :math:`\frac1D \sum_d (\hat x_d - x_d)^2`: ``(N, D) -> (N,)``."""
    _check_pair(estimate, target)
    return (estimate - target).pow(2).flatten(1).mean(-1)


def psnr(estimate, target, data_range=1.0):
    r"""
    Per-image peak signal-to-noise ratio in dB, :math:`10 \log_{10}\big(R^2 / \mathrm{MSE}\big)` with
    :math:`R` the data range (1 for images in [0, 1]): ``(N, D) -> (N,)``. A perfect estimate gives ``inf``.
    """
    if not (isinstance(data_range, numbers.Real) and data_range > 0):
        raise ValueError(f"data_range must be > 0, got {data_range!r}")
    return 10.0 * torch.log10(data_range**2 / mse(estimate, target))
