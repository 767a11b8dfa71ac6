"""Per-data-point importance-sampled log-likelihood (IWAE-k) of any Pyro model/guide pair with a data plate."""

import math
from dataclasses import dataclass

import torch
from pyro.infer.util import is_validation_enabled
from pyro.poutine.runtime import am_i_wrapped
from tqdm.auto import tqdm

from ..infer.importance import (
    check_local,
    importance_traces,
    infer_max_plate_nesting,
    per_point_log_weights,
    site_structure,
)
from ..models.fused import is_plain_vae_pair, vae_log_weights
from ..models.vae import check_data
from .chunks import (
    check_nesting,
    check_positive_int,
    check_programs,
    denoising_pair,
    make_chunks,
    probe_structure,
)

__all__ = [
    "ImportanceEstimate",
    "estimate_chunks",
    "importance_estimate",
    "iwae_bound",
    "log_likelihood",
    "summarize",
    "traced_log_weights",
    "traced_pass",
]


# ----------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------


def traced_log_weights(model, guide, args, kwargs, num_particles, max_plate_nesting, data_plate, num_data=None,
                           check=True):
    r"""
    One vectorized pass: ``(S, B)`` log weights :math:`\log p(x_b, z_{sb}) - \log q(z_{sb} \mid x_b)`, ``S`` the
    ``num_particles`` draws times the copies of any replicate (corruption) plate, traced and reduced by the
    core (:func:`~pyro_noisevae.infer.importance.importance_traces`,
    :func:`~pyro_noisevae.infer.importance.per_point_log_weights`). Log densities are **unscaled**
    (``poutine.scale``, β and subsampling factors are ignored; ``poutine.mask`` is honoured): the estimate is of
    the model's actual :math:`\log p(x)`, not of a training objective.
    """
    pairs, particle_dim = importance_traces(model, guide, args, kwargs, num_particles, max_plate_nesting,
                                            vectorize=True, check=check)
    model_trace, guide_trace = pairs[0]
    structure = site_structure(model_trace, guide_trace, data_plate)
    frame = structure.data_frame
    if frame is not None and num_data is not None and frame.size != num_data:
        raise ValueError(
            f"the data plate {frame.name!r} has size {frame.size} but the data chunk has {num_data} rows; the data "
            "argument(s) named by data_arg are sliced along their first dim, which must index the data plate "
            "(for a guide with per-point parameters, pass data_arg=None to subsample the plate instead)"
        )
    if frame is not None and (frame.dim is None or frame.dim < -max_plate_nesting):
        raise ValueError(f"data plate {frame.name!r} sits at dim {frame.dim}, outside max_plate_nesting={max_plate_nesting}")
    log_w = per_point_log_weights(model_trace, guide_trace, structure, max_plate_nesting, particle_dim, num_particles)
    if torch.isnan(log_w).any():
        raise ValueError(
            "the importance log-weights contain NaN; check that the data lie in the likelihood's support and that "
            "the guide's parameters are finite"
        )
    return log_w


def _fast_vae(model, guide, args, kwargs, data_arg, fast_path):
    """
    The :class:`~pyro_noisevae.models.VAE` whose closed-form log weights replace the traced ones, or ``None``.
    The fused path applies when ``model``/``guide`` are the plain ``vae.model``/``vae.guide`` of one VAE called
    as ``(x)`` or ``(x, num_data=...)`` outside any effect handler (handlers would change what the programs
    compute). ``fast_path=True`` demands it, ``False`` refuses it, ``None`` uses it when it applies.
    """
    if fast_path is False:
        return None
    reasons = []
    if not is_plain_vae_pair(model, guide):
        reasons.append("model and guide are not the plain vae.model / vae.guide of one pyro_noisevae VAE")
    if len(args) != 1 or set(kwargs) - {"num_data"} or data_arg not in (0, (0,), [0], "auto"):
        reasons.append("the programs must be called with the data only: (x) or (x, num_data=...)")
    if am_i_wrapped():
        reasons.append("effect handlers are active around the call")
    if not reasons:
        return model.__self__
    if fast_path:
        raise ValueError("fast_path=True but the fused VAE path does not apply: " + "; ".join(reasons))
    return None


def _fused_log_weights(vae, x, num_particles):
    """``(P, B)`` log weights of the VAE's guide as proposal, in closed form (same draws as the traced path)."""
    t = vae_log_weights(vae, x, num_particles)
    log_w = t["log_px_z"] + t["log_pz"] - t["log_qz"]
    if torch.isnan(log_w).any():
        raise ValueError(
            "the importance log-weights contain NaN; check that the data lie in the likelihood's support and that "
            "the guide's parameters are finite"
        )
    return log_w


def _check_fast_data(vae, x):
    check_data(x, vae.x_dim)
    if is_validation_enabled():
        vae.likelihood.check_data(x)


def _log_weight_pass(model, guide, args, kwargs, data_arg, data_plate, max_plate_nesting, fast_path):
    """
    The per-chunk log-weight function of :func:`importance_estimate` and :func:`iwae_bound`:
    ``pass_(chunk, num_particles, first) -> (S, B)`` log weights, in closed form for a plain VAE (data validated
    once here), traced otherwise (``max_plate_nesting`` inferred on the first chunk, Pyro's structural checks on
    the ``first`` pass of each data chunk).
    """
    vae = _fast_vae(model, guide, args, kwargs, data_arg, fast_path)
    if vae is not None:
        _check_fast_data(vae, args[0])
        return lambda chunk, num_particles, first: _fused_log_weights(vae, chunk.args[0], num_particles)
    return traced_pass(model, guide, data_plate, max_plate_nesting)


def traced_pass(model, guide, data_plate=None, max_plate_nesting=None):
    """
    The traced per-chunk log-weight function ``pass_(chunk, num_particles, first) -> (S, B)`` of any (model,
    guide) pair: a :class:`~pyro_noisevae.guides.DenoisingGuide`'s model is put in its corruption plate, global
    latents are refused on the first chunk (before the vectorized pass could fail inside the user's code), and
    ``max_plate_nesting`` is inferred there when ``None``.
    """
    model, guide = denoising_pair(model, guide)
    nesting = [max_plate_nesting]

    def traced(chunk, num_particles, first):
        m, g = chunk.wrap(model), chunk.wrap(guide)
        if nesting[0] is None:
            # global latents would break the vectorized pass in the user's code: refuse them first, clearly
            check_local(probe_structure(m, g, chunk.args, chunk.kwargs, data_plate))
            nesting[0] = max(1, infer_max_plate_nesting(m, g, chunk.args, chunk.kwargs))
        return traced_log_weights(m, g, chunk.args, chunk.kwargs, num_particles, nesting[0], data_plate,
                                      chunk.num_rows, check=first)

    return traced


# ----------------------------------------------------------------------------------------------------------


def estimate_chunks(log_weights, chunks, num_samples, chunk_size=100, progress=False, desc=None):
    r"""
    IWAE-k estimates over data ``chunks`` (:class:`~pyro_noisevae.evaluation.chunks.Chunk`), ``k = num_samples``
    drawn ``chunk_size`` at a time by ``log_weights(chunk, num_particles, first)`` and combined by a running
    log-sum-exp (memory bounded by one pass). Padding rows of a chunk are dropped.

    :rtype: ImportanceEstimate
    """
    particle_chunks = [min(chunk_size, num_samples - s) for s in range(0, num_samples, chunk_size)]
    results = []
    with torch.no_grad(), tqdm(total=len(chunks) * len(particle_chunks), desc=desc or f"IWAE-{num_samples}",
                               disable=not progress, leave=False) as bar:
        for chunk in chunks:
            acc = None
            for i, size in enumerate(particle_chunks):
                log_w = log_weights(chunk, size, i == 0)[:, : chunk.valid]
                if acc is None:
                    acc = _WeightAccumulator(log_w.shape[1], log_w.device)
                    dtype = log_w.dtype
                acc.update(log_w)
                bar.update(1)
            results.append(acc.result(dtype))
    return ImportanceEstimate.cat(results)


def _accumulator_dtype(device):
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


class _WeightAccumulator:
    """Running per-point statistics of log weights arriving in chunks of particles: log-sum-exp of
    :math:`\\log w` and of :math:`2 \\log w`, and the sum and sum of squares of :math:`\\log w`."""

    def __init__(self, num_data, device):
        dtype = _accumulator_dtype(device)
        self.count = 0
        self.lse = torch.full((num_data,), -math.inf, dtype=dtype, device=device)
        self.lse2 = self.lse.clone()
        self.sum = torch.zeros(num_data, dtype=dtype, device=device)
        self.sumsq = self.sum.clone()

    def update(self, log_w):
        lw = log_w.detach().to(self.lse.dtype)
        self.lse = torch.logaddexp(self.lse, lw.logsumexp(0))
        self.lse2 = torch.logaddexp(self.lse2, (2 * lw).logsumexp(0))
        self.sum += lw.sum(0)
        self.sumsq += lw.pow(2).sum(0)
        self.count += lw.shape[0]

    def result(self, dtype):
        k = self.count
        log_px = self.lse - math.log(k)
        # delta method: Var[log mean w] ~ Var[w] / (k E[w]^2), with E[w^2]/E[w]^2 = k exp(lse2 - 2 lse)
        rel_var = (math.log(k) + self.lse2 - 2 * self.lse).exp() - 1
        stderr = (rel_var.clamp(min=0) / k).sqrt()
        ess = (2 * self.lse - self.lse2).exp()
        elbo = self.sum / k
        var = ((self.sumsq - self.sum.pow(2) / k) / max(k - 1, 1)).clamp(min=0)
        elbo_stderr = (var / k).sqrt()
        if k == 1:  # one sample says nothing about its own spread
            stderr, elbo_stderr = torch.full_like(stderr, math.nan), torch.full_like(elbo_stderr, math.nan)
        return ImportanceEstimate(
            log_px=log_px.to(dtype),
            stderr=stderr.to(dtype),
            ess=ess.to(dtype),
            elbo=elbo.to(dtype),
            elbo_stderr=elbo_stderr.to(dtype),
            num_samples=k,
        )


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------


@dataclass
class ImportanceEstimate:
    r"""
    Per-data-point results of importance sampling with ``k`` samples :math:`z_{1:k} \sim q(z \mid x_n)`,
    :math:`w_i = p(x_n, z_i) / q(z_i \mid x_n)`. Every field is a tensor of shape ``(N,)``.

    :ivar log_px: the IWAE-k estimate :math:`\hat{\mathcal L}_k(x_n) = \log \frac1k \sum_i w_i`
        (a stochastic lower bound of :math:`\log p(x_n)` in expectation; consistent as :math:`k \to \infty`).
    :ivar stderr: delta-method Monte Carlo standard error of ``log_px``,
        :math:`\sqrt{(\overline{w^2}/\bar w^2 - 1)/k}` (unreliable when the weights are heavy-tailed; check ``ess``;
        NaN for ``k = 1``).
    :ivar ess: effective sample size :math:`(\sum_i w_i)^2 / \sum_i w_i^2 \in [1, k]`.
    :ivar elbo: :math:`\frac1k \sum_i \log w_i`, the Monte Carlo estimate of the ELBO of the guide.
    :ivar elbo_stderr: its standard error, :math:`\mathrm{sd}(\log w)/\sqrt k` (NaN for ``k = 1``).
    :ivar int num_samples: ``k``.
    """

    log_px: torch.Tensor
    stderr: torch.Tensor
    ess: torch.Tensor
    elbo: torch.Tensor
    elbo_stderr: torch.Tensor
    num_samples: int

    def summary(self):
        """:func:`summarize` of ``log_px`` (with its Monte Carlo error) and of ``elbo``: a dict of floats."""
        out = {f"log_px_{k}": v for k, v in summarize(self.log_px, mc_stderr=self.stderr).items()}
        out.update({f"elbo_{k}": v for k, v in summarize(self.elbo, mc_stderr=self.elbo_stderr).items()})
        out["num_samples"] = self.num_samples
        return out

    @staticmethod
    def cat(estimates):
        """Concatenate estimates of consecutive data chunks (same ``num_samples``)."""
        estimates = list(estimates)
        fields = ("log_px", "stderr", "ess", "elbo", "elbo_stderr")
        return ImportanceEstimate(
            **{f: torch.cat([getattr(e, f) for e in estimates]) for f in fields},
            num_samples=estimates[0].num_samples,
        )


def importance_estimate(model, guide, *args, num_samples=5000, chunk_size=100, batch_size=100, data_arg="auto",
                        data_plate=None, max_plate_nesting=None, progress=True, fast_path=None, **kwargs):
    r"""
    Importance-sample :math:`\log p(x_n)` for every data point of a Pyro ``model`` with proposal ``guide``
    (the IWAE-k estimator of Burda et al. 2016):

    .. math::

        \hat{\mathcal L}_k(x_n) = \log \frac1k \sum_{i=1}^k \frac{p(x_n, z_i)}{q(z_i \mid x_n)},
        \qquad z_i \sim q(z \mid x_n),

    with :math:`\mathbb E[\hat{\mathcal L}_1] = \mathrm{ELBO} \le \mathbb E[\hat{\mathcal L}_k]
    \le \mathbb E[\hat{\mathcal L}_{k+1}] \le \log p(x_n)` and :math:`\hat{\mathcal L}_k \to \log p(x_n)`.

    **Memory is bounded by the chunk sizes, not by k.** The data are processed ``batch_size`` points at a
    time and the ``k`` samples ``chunk_size`` at a time (one vectorized pass of guide and model under an
    outer plate of ``chunk_size`` particles); chunks are combined with a running log-sum-exp, so peak
    memory is that of one pass over ``chunk_size x batch_size`` particles.

    **Requirements.** Every sample site of model and guide must lie in the data plate (found
    automatically as the one plate common to all sites, or named with ``data_plate``), the guide must
    sample every model latent, and the data tensor(s) named by ``data_arg`` must index data points along
    their first dim (they are sliced into chunks; other arguments are passed unchanged). Log-densities are
    unscaled: ``beta_scale``/``poutine.scale`` and subsampling factors are ignored, ``poutine.mask`` is
    honoured. Runs under :func:`torch.no_grad`, on the device of the model and data; seed with
    :func:`pyro.set_rng_seed`.

    :param model: Pyro model, called as ``model(*args, **kwargs)`` on each data chunk.
    :param guide: Pyro guide (the proposal), same signature.
    :param args: model/guide arguments; ``args[data_arg]`` holds the data, shape ``(N, ...)``.
    :param int num_samples: ``k >= 1`` importance samples per data point.
    :param int chunk_size: samples per vectorized pass.
    :param batch_size: data points per pass (``None``: all ``N`` at once).
    :param data_arg: position (int) or keyword (str) of the data argument, or a tuple of them when several
        arguments are per-data-point (e.g. images and labels).
    :param str data_plate: name of the data plate (default: inferred).
    :param int max_plate_nesting: plates nested in model and guide (default: inferred by one trace).
    :param bool progress: show a progress bar.
    :param fast_path: for the plain ``vae.model``/``vae.guide`` of a :class:`~pyro_noisevae.models.VAE`, compute
        the log weights in closed form (:func:`~pyro_noisevae.models.vae_log_weights`: the same estimator from
        the same draws, without tracing). ``None`` (default): whenever it applies; ``False``: always trace;
        ``True``: raise if it does not apply.
    :returns: the per-point estimates and diagnostics (each of shape ``(N,)``).
    :rtype: ImportanceEstimate
    :raises ValueError, TypeError: on invalid arguments or programs, with a message saying what to fix.
    """
    check_programs(model, guide)
    num_samples = check_positive_int(num_samples, "num_samples")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
    max_plate_nesting = check_nesting(max_plate_nesting)
    log_weights = _log_weight_pass(model, guide, args, kwargs, data_arg, data_plate, max_plate_nesting, fast_path)
    chunks, data_plate = make_chunks(*denoising_pair(model, guide), args, kwargs, data_arg, batch_size, data_plate)
    return estimate_chunks(log_weights, chunks, num_samples, chunk_size, progress)


def iwae_bound(model, guide, *args, num_particles=5, num_repeats=100, chunk_size=500, batch_size=100, data_arg="auto",
               data_plate=None, max_plate_nesting=None, progress=True, fast_path=None, **kwargs):
    r"""
    Monte Carlo estimate of the importance-weighted **bound** with ``K`` particles (the training objective
    of an IWAE-K / DIWAE-K model, and the ELBO for ``K = 1``), per data point:

    .. math::

        \mathcal L_K(x_n) = \mathbb E_{z_{1:K} \sim q(z|x_n)}\Big[\log \frac1K \sum_{k=1}^K w_k\Big]
        \approx \frac1R \sum_{r=1}^R \log \frac1K \sum_{k=1}^K w_{rk},

    averaged over ``R = num_repeats`` independent groups of ``K`` samples. Unlike
    :func:`importance_estimate` (one group of ``k`` samples: a log-likelihood estimate), this estimates the
    bound itself, e.g. the "negative ELBO" / "negative IWAE-5 bound" columns of published tables.
    Chunked like :func:`importance_estimate` (each pass draws a whole number of groups).

    :param int num_particles: ``K``.
    :param int num_repeats: ``R``.
    :param fast_path: closed-form log weights for a plain VAE, as in :func:`importance_estimate`.
    :returns: ``(bound, stderr)``, each of shape ``(N,)``; ``stderr`` is the standard error over the ``R``
        groups (NaN when ``R = 1``).
    :rtype: tuple
    """
    check_programs(model, guide)
    K = check_positive_int(num_particles, "num_particles")
    R = check_positive_int(num_repeats, "num_repeats")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
    max_plate_nesting = check_nesting(max_plate_nesting)
    per_pass = max(1, chunk_size // K)  # groups per vectorized pass
    group_chunks = [min(per_pass, R - s) for s in range(0, R, per_pass)]
    log_weights = _log_weight_pass(model, guide, args, kwargs, data_arg, data_plate, max_plate_nesting, fast_path)
    chunks, data_plate = make_chunks(*denoising_pair(model, guide), args, kwargs, data_arg, batch_size, data_plate)
    bounds, errors = [], []
    with torch.no_grad(), tqdm(total=len(chunks) * len(group_chunks), desc=f"IWAE-{K} bound", disable=not progress,
                               leave=False) as bar:
        for chunk in chunks:
            total = sq = None
            count = 0
            for i, groups in enumerate(group_chunks):
                # (S, B) with S = copies x groups x K (replicate copies outermost): groups of K share a copy
                log_w = log_weights(chunk, groups * K, i == 0)[:, : chunk.valid]
                dtype = log_w.dtype
                b = log_w.to(_accumulator_dtype(log_w.device)).reshape(-1, K, log_w.shape[-1]).logsumexp(1) - math.log(K)
                total = b.sum(0) if total is None else total + b.sum(0)
                sq = b.pow(2).sum(0) if sq is None else sq + b.pow(2).sum(0)
                count += b.shape[0]
                bar.update(1)
            mean = total / count
            var = ((sq - total.pow(2) / count) / (count - 1)).clamp(min=0) if count > 1 else torch.full_like(mean, math.nan)
            bounds.append(mean.to(dtype))
            errors.append((var / count).sqrt().to(dtype))
    return torch.cat(bounds), torch.cat(errors)


def log_likelihood(model, guide, *args, num_samples=5000, chunk_size=100, batch_size=100, progress=True, **kwargs):
    r"""
    Per-data-point IWAE-k estimate of :math:`\log p(x_n)`:
    :math:`\hat{\mathcal L}_k(x_n) = \log \frac1k \sum_{i=1}^k p(x_n, z_i) / q(z_i \mid x_n)`,
    :math:`z_i \sim q(z \mid x_n)` (the guide is the proposal).

    Chunked over samples and data (memory bounded by ``chunk_size x batch_size`` particles, not by ``k``).
    All options of :func:`importance_estimate` apply (``data_arg``, ``data_plate``, ``max_plate_nesting``);
    use that function for standard errors, effective sample sizes and the ELBO.

    Example::

        vae = VAE(x_dim=784, z_dim=50)
        ll = log_likelihood(vae.model, vae.guide, x_test, num_samples=5000)   # (N,)
        print(summarize(ll))                                                   # mean and standard error

    :param model: Pyro model with every site in a data plate.
    :param guide: Pyro guide (proposal) with the same signature.
    :param args: model/guide arguments, the data first (shape ``(N, ...)``).
    :param int num_samples: ``k`` (default 5000, the IWAE paper's evaluation).
    :param int chunk_size: importance samples per vectorized pass.
    :param batch_size: data points per pass (``None``: all at once).
    :param bool progress: show a progress bar.
    :returns: tensor of shape ``(N,)``.
    """
    est = importance_estimate(
        model, guide, *args, num_samples=num_samples, chunk_size=chunk_size, batch_size=batch_size, progress=progress, **kwargs
    )
    return est.log_px


def summarize(values, mc_stderr=None):
    r"""
    Mean over data points and its standard error :math:`\mathrm{sd}(v)/\sqrt N` (sampling error of the test
    set), plus, when per-point Monte Carlo standard errors :math:`s_n` are given, the Monte Carlo error of
    the mean :math:`\sqrt{\sum_n s_n^2}/N`.

    :param torch.Tensor values: per-point values, shape ``(N,)``.
    :param torch.Tensor mc_stderr: optional per-point Monte Carlo standard errors, shape ``(N,)``.
    :returns: ``{"mean", "stderr", "num_points"[, "mc_stderr"]}`` as Python numbers (``stderr`` is NaN for
        ``N = 1``).
    :rtype: dict
    """
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or values.numel() < 1:
        raise ValueError(f"values must be a 1-D tensor with at least one entry, got {getattr(values, 'shape', values)}")
    v = values.detach().double()
    n = v.numel()
    out = {
        "mean": v.mean().item(),
        "stderr": (v.std() / math.sqrt(n)).item() if n > 1 else math.nan,
        "num_points": n,
    }
    if mc_stderr is not None:
        if not isinstance(mc_stderr, torch.Tensor) or mc_stderr.shape != values.shape:
            raise ValueError(f"mc_stderr must be a tensor of shape {tuple(values.shape)}")
        out["mc_stderr"] = (mc_stderr.detach().double().pow(2).sum().sqrt() / n).item()
    return out
