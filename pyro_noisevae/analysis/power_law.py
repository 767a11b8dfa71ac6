"""Power laws y = A x^(-ν): least-squares log-log fits with bootstrap intervals, local exponents, a broken law."""

import math
import numbers
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = ["BrokenPowerLawFit", "PowerLawFit", "fit_broken_power_law", "fit_power_law", "local_exponents"]


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
