"""Energy functions of the noisy variable Y = X + N(0, σ²I): ELBO/IWAE of a Pyro model/guide, exact Gaussian."""

import math
import numbers

import pyro
import torch
from torch import nn

from ..infer.importance import importance_traces, infer_max_plate_nesting, per_point_log_weights, site_structure

__all__ = ["ELBOEnergy", "Energy", "GaussianEnergy", "check_points", "check_sigma"]


def check_sigma(sigma, name="sigma"):
    """
    Validate a noise level: a finite number (or 0-dim tensor) ``> 0``. Returns it as a Python float.

    :raises ValueError: if ``sigma`` is not finite and strictly positive.
    """
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape {tuple(sigma.shape)}")
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"{name} must be a real number > 0, got {type(sigma).__name__}")
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {sigma!r}")
    return sigma


def check_points(y, dim=None, name="y"):
    """
    Validate a batch of points: a floating tensor of shape ``(B, D)`` with finite values and ``B >= 1``.

    :param int dim: the expected feature size ``D`` (not checked when ``None``).
    :raises TypeError, ValueError: with a message that says what to fix.
    """
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, features), got {type(y).__name__}")
    if not y.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {y.dtype}")
    if y.dim() != 2 or y.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (batch, features) with batch >= 1, got {tuple(y.shape)}; "
            "flatten images with y.flatten(1) and add a batch dimension with y[None] for a single point"
        )
    if dim is not None and y.shape[-1] != dim:
        raise ValueError(f"{name} has {y.shape[-1]} features but the energy expects {dim}")
    if not torch.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return y


class Energy(nn.Module):
    r"""
    Base class of energy functions :math:`f(y) = -\log p(y) + c` of the noisy variable
    :math:`Y = X + N(0, \sigma^2 I)`, up to an additive constant :math:`c` that does not depend on
    :math:`y`.

    Subclasses implement :meth:`forward`: ``y`` of shape ``(B, D)`` -> ``f(y)`` of shape ``(B,)``, one
    value per point, with points independent of each other (so that the gradient of ``f(y).sum()``
    is the batch of per-point gradients :math:`\nabla_y f(y_b)`).
    """

    #: feature size ``D`` (``None`` when not fixed)
    dim = None

    def forward(self, y):
        raise NotImplementedError

    def energy_and_grad(self, y, create_graph=False):
        r"""
        The energy and its gradient in ``y``.

        :param torch.Tensor y: points of shape ``(B, D)``.
        :param bool create_graph: keep the graph of the gradient so that a loss built from it can be
            back-propagated to the energy's parameters (double backpropagation).
        :returns: ``(f, grad)`` with ``f`` of shape ``(B,)`` and ``grad`` :math:`= \nabla_y f` of shape
            ``(B, D)``. Without ``create_graph`` both are detached.
        """
        check_points(y, self.dim)
        with torch.enable_grad():
            y_in = y if (create_graph and y.requires_grad) else y.detach().requires_grad_(True)
            f = self(y_in)
            if f.shape != y.shape[:1]:
                raise ValueError(f"{type(self).__name__} returned shape {tuple(f.shape)}, expected ({y.shape[0]},)")
            (grad,) = torch.autograd.grad(f.sum(), y_in, create_graph=create_graph)
        if not create_graph:
            f, grad = f.detach(), grad.detach()
        return f, grad

    def score(self, y, create_graph=False):
        r""":math:`\nabla_y \log p(y) = -\nabla_y f(y)`, shape ``(B, D)``."""
        return -self.energy_and_grad(y, create_graph)[1]


class GaussianEnergy(Energy):
    r"""
    Exact energy of a Gaussian :math:`N(m, C)`:

    .. math::

        f(y) = \tfrac12 (y - m)^\top C^{-1} (y - m) + \tfrac12 \log\det(2\pi C),

    so that :math:`f = -\log N(y; m, C)` exactly. For data :math:`X \sim N(m, S)` the noisy variable
    :math:`Y = X + N(0, \sigma^2 I)` has :math:`C = S + \sigma^2 I` (:meth:`smoothed`), and the Bayes
    estimator of this energy is the Wiener filter :math:`m + S (S + \sigma^2 I)^{-1}(y - m)`.

    :param torch.Tensor loc: mean :math:`m`, shape ``(D,)``.
    :param torch.Tensor covariance_matrix: symmetric positive definite :math:`C`, shape ``(D, D)``.
    """

    def __init__(self, loc, covariance_matrix):
        super().__init__()
        if not (isinstance(loc, torch.Tensor) and loc.dim() == 1):
            raise ValueError("loc must be a tensor of shape (D,)")
        d = loc.shape[0]
        if not (isinstance(covariance_matrix, torch.Tensor) and covariance_matrix.shape == (d, d)):
            raise ValueError(f"covariance_matrix must be a tensor of shape ({d}, {d}) matching loc")
        if not (torch.isfinite(loc).all() and torch.isfinite(covariance_matrix).all()):
            raise ValueError("loc and covariance_matrix must be finite")
        chol, info = torch.linalg.cholesky_ex(covariance_matrix)
        if info.item() != 0:
            raise ValueError("covariance_matrix must be symmetric positive definite (its Cholesky failed)")
        self.dim = d
        self.register_buffer("loc", loc)
        self.register_buffer("scale_tril", chol)

    @classmethod
    def smoothed(cls, loc, covariance_matrix, sigma):
        r"""Energy of :math:`Y = X + N(0, \sigma^2 I)` for :math:`X \sim N(m, S)`: covariance :math:`S + \sigma^2 I`."""
        sigma = check_sigma(sigma)
        eye = torch.eye(loc.shape[-1], dtype=covariance_matrix.dtype, device=covariance_matrix.device)
        return cls(loc, covariance_matrix + sigma**2 * eye)

    def forward(self, y):
        check_points(y, self.dim)
        # one triangular solve with the batch as right-hand-side columns (a batched solve would copy L per point)
        w = torch.linalg.solve_triangular(self.scale_tril, (y - self.loc).T, upper=False).T
        half_logdet = self.scale_tril.diagonal().log().sum()
        return 0.5 * w.pow(2).sum(-1) + half_logdet + 0.5 * self.dim * math.log(2 * math.pi)


def _owners(*fns):
    """The ``nn.Module`` objects behind model/guide callables (the module itself, or a bound method's owner)."""
    owners = []
    for fn in fns:
        obj = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
        if isinstance(obj, nn.Module) and all(obj is not o for o in owners):
            owners.append(obj)
    return owners


class _ParamStoreView(nn.Module):
    """Holds the param-store tensors of plain-function programs (``pyro.param`` / ``pyro.module``) so that
    ``energy.parameters()`` reaches them; the tensors are the store's own (same autograd leaves)."""

    def add(self, name, tensor):
        key = name.replace(".", "_").replace("$$$", "__")
        if key not in self._parameters:
            self._parameters[key] = tensor  # the store's leaf itself: wrapping it would break the autograd link


class ELBOEnergy(Energy):
    r"""
    Energy of a Pyro model/guide pair used as a density model of the noisy variable :math:`Y`
    (unnormalized variational Bayes): the negative evidence lower bound of each point,

    .. math::

        f(y) = -\mathrm{ELBO}(y) = -\mathbb{E}_{q(z \mid y)}\big[\log p(y, z) - \log q(z \mid y)\big]
        \;\ge\; -\log p(y),

    estimated with ``num_particles`` reparameterized samples :math:`z_k = g(\epsilon_k; y)`, so that
    :math:`f` is a differentiable function of :math:`y` through the observed site *and* through the
    encoder (``bound="elbo"``, average over particles), or the importance weighted bound
    (``bound="iwae"``)

    .. math::

        f(y) = -\log \frac1K \sum_{k=1}^K \frac{p(y, z_k)}{q(z_k \mid y)}.

    The per-point log weights come from the library's importance-weight core
    (:func:`~pyro_noisevae.infer.importance.per_point_log_weights`), with particles vectorized under an outer
    plate. With ``analytic_kl=True`` (ELBO only) each latent site's :math:`\mathbb{E}_q[\log p(z) - \log q(z)]`
    is replaced by :math:`-\mathrm{KL}(q \,\|\, p)` where a closed form is registered, as in
    :class:`pyro.infer.TraceMeanField_ELBO` (valid for mean-field guides such as the VAE's).

    Contract: ``model(y, *args, **kwargs)`` and ``guide(y, *args, **kwargs)`` take the batch ``y`` of
    shape ``(B, D)`` as first argument and put every sample site inside one data plate of size ``B``
    without subsampling (found as the plate common to every site, or named with ``plate_name``); the
    guide's latent sites must be reparameterizable, and there must be no global latents. Each site's
    log-density keeps its ``scale`` (so :func:`pyro_noisevae.handlers.beta_scale` applies) and is summed over
    every dimension except the data plate, so the output has one value per point.

    **Parameters.** If ``model``/``guide`` are bound methods of (or are) ``nn.Module`` objects, those modules
    are registered as submodules, so ``ELBOEnergy(vae.model, vae.guide).parameters()`` are the VAE's
    parameters. Plain functions that register their networks with ``pyro.module`` or ``pyro.param`` have
    their parameters registered on the first call (``fit_denoiser`` makes that call before it builds its
    optimizer).

    :param callable model: Pyro model with an observed site fed by ``y``.
    :param callable guide: Pyro guide ``q(z | y)``.
    :param int num_particles: number K of samples of ``z`` per point.
    :param str bound: ``"elbo"`` or ``"iwae"``.
    :param bool analytic_kl: use closed-form KL terms where available (ELBO only).
    :param str plate_name: name of the data plate (default: inferred).
    :param int dim: expected feature size D, checked on input (default: the owning module's ``x_dim``
        attribute if it has one, else not checked).

    Example::

        >>> from pyro_noisevae.models import VAE
        >>> vae = VAE(x_dim=4, z_dim=2, hidden_dims=(8,), likelihood="normal", sigma=0.5)
        >>> energy = ELBOEnergy(vae.model, vae.guide)
        >>> f, grad = energy.energy_and_grad(torch.randn(3, 4))
        >>> f.shape, grad.shape
        (torch.Size([3]), torch.Size([3, 4]))

    **References**

    1. S. Saremi, *Unnormalized Variational Bayes* (2020).
    """

    def __init__(self, model, guide, num_particles=1, bound="elbo", analytic_kl=True, plate_name=None, dim=None):
        super().__init__()
        if not (callable(model) and callable(guide)):
            raise TypeError("model and guide must be callables (e.g. vae.model and vae.guide)")
        if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be an integer >= 1, got {num_particles!r}")
        if bound not in ("elbo", "iwae"):
            raise ValueError(f"bound must be 'elbo' or 'iwae', got {bound!r}")
        if plate_name is not None and not isinstance(plate_name, str):
            raise TypeError(f"plate_name must be a plate name (str) or None, got {type(plate_name).__name__}")
        self.model, self.guide = model, guide
        self.num_particles, self.bound = num_particles, bound
        self.analytic_kl = bool(analytic_kl) and bound == "elbo"
        self.plate_name = plate_name
        # register the modules that own model/guide so that .parameters()/.to() reach them
        self.owners = nn.ModuleList(_owners(model, guide))
        self.program_params = _ParamStoreView()
        self._nesting = None
        if dim is None:  # e.g. VAE.x_dim
            dim = next((o.x_dim for o in self.owners if isinstance(getattr(o, "x_dim", None), int)), None)
        self.dim = None if dim is None else int(dim)

    def _register_params(self, traces):
        known = {id(p) for p in self.parameters()}
        store = dict(pyro.get_param_store().named_parameters())
        for trace in traces:
            for name, site in trace.nodes.items():
                if site["type"] == "param" and name in store and id(store[name]) not in known:
                    self.program_params.add(name, store[name])
                    known.add(id(store[name]))

    def log_weights(self, y, *args, **kwargs):
        r"""
        Per-particle terms of the bound, shape ``(K, B)``: :math:`\log p(y, z_k) - \log q(z_k \mid y)`
        (with KL terms in closed form when ``analytic_kl``). When the program has a replicate plate of size
        ``M`` (e.g. a denoising guide's corruptions), each particle's term is the mean over its ``M`` copies.
        """
        check_points(y, self.dim)
        args = (y,) + args
        first = self._nesting is None
        if first:
            self._nesting = max(1, infer_max_plate_nesting(self.model, self.guide, args, kwargs))
        k, b = self.num_particles, y.shape[0]
        pairs, particle_dim = importance_traces(self.model, self.guide, args, kwargs, k, self._nesting, check=first)
        model_tr, guide_tr = pairs[0]
        for name, site in guide_tr.nodes.items():
            if site["type"] == "sample" and not site["is_observed"] and not site["fn"].has_rsample:
                raise ValueError(
                    f"guide site {name!r} ({type(site['fn']).__name__}) is not reparameterizable; the energy's "
                    "gradient in y needs rsample: use a reparameterized guide distribution (or a relaxed one)")
        structure = site_structure(model_tr, guide_tr, self.plate_name)
        frame = structure.data_frame
        if frame is not None and (frame.size != b or (frame.full_size is not None and frame.full_size != frame.size)):
            raise ValueError(
                f"the data plate {frame.name!r} must have size {b} (one entry per point, no subsampling), got size "
                f"{frame.size}" + ("" if frame.full_size in (None, frame.size) else f" subsampled from {frame.full_size}"))
        if first:  # programs register their parameters on their first run
            self._register_params((model_tr, guide_tr))
        log_w = per_point_log_weights(model_tr, guide_tr, structure, self._nesting, particle_dim, k, scaled=True,
                                      analytic_kl=self.analytic_kl)
        # rows are ordered particle-major, (K, M) flattened: average each particle's M replicate copies
        return log_w.reshape(k, -1, b).mean(1) if log_w.shape[0] != k else log_w

    def forward(self, y, *args, **kwargs):
        """:math:`f(y)` of shape ``(B,)`` (see the class docstring)."""
        log_w = self.log_weights(y, *args, **kwargs)
        if self.bound == "iwae":
            return -(log_w.logsumexp(0) - math.log(self.num_particles))
        return -log_w.mean(0)
