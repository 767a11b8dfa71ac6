"""Denoising guides: the encoder sees a corrupted input x~ ~ p(x~ | x) while the model scores the clean x."""

import numbers

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import Distribution

from ..infer.importance import REPLICATE_KEY

__all__ = ["DenoisingGuide"]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _owner(fn):
    """The ``nn.Module`` behind a callable (itself, or the instance of a bound method), if any."""
    if isinstance(fn, torch.nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


class _ReplicateMessenger(Messenger):
    """Tag every sample site with the name of the corruption plate it runs in (``infer["replicate_plate"]``), so
    that evaluation pools the ``M`` corrupted copies as importance samples of the same :math:`p(x)`."""

    def __init__(self, plate_name):
        super().__init__()
        self.plate_name = plate_name

    def _pyro_sample(self, msg):
        if not site_is_subsample(msg):
            msg["infer"] = dict(msg["infer"], **{REPLICATE_KEY: self.plate_name})


class _CorruptionPlateModel(torch.nn.Module):
    """``model`` run inside the corruption plate of a :class:`DenoisingGuide` with scale 1/M (as is when M = 1)."""

    def __init__(self, model, denoiser):
        super().__init__()
        self._model = model
        owner = _owner(model)
        if owner is not None:
            # registered so that ELBOModule(model, guide).parameters() sees the model's parameters;
            # a plain nn.Module container does not rename PyroModule parameters
            self.owner = owner
        self._plate_args = (denoiser.plate_name, denoiser.num_corruptions, denoiser.plate_dim)

    def forward(self, *args, **kwargs):
        name, size, dim = self._plate_args
        if size == 1:
            return self._model(*args, **kwargs)
        with pyro.plate(name, size, dim=dim), poutine.scale(scale=1.0 / size), _ReplicateMessenger(name):
            return self._model(*args, **kwargs)


class DenoisingGuide(torch.nn.Module):
    r"""
    Wrap a guide so that its encoder sees corrupted inputs :math:`\tilde x \sim p(\tilde x \mid x)` while
    the model still scores the clean :math:`x` (the denoising criterion, Im et al. 2017; the DVAE
    regularizer of amortized inference regularization, Shu et al. 2018). With ``M`` corruptions and
    ``K`` particles of the ELBO per data point, the objectives are

    .. math::

        \mathcal{L}_\text{DVAE} = \frac1M \sum_{m=1}^M \frac1K \sum_{k=1}^K
            \log \frac{p(x, z^{(k|m)})}{q(z^{(k|m)} \mid \tilde x^{(m)})}
        \quad\text{(Trace_ELBO)}, \qquad
        \mathcal{L}_\text{DIWAE} = \frac1M \sum_{m=1}^M
            \log \frac1K \sum_{k=1}^K \frac{p(x, z^{(k|m)})}{q(z^{(k|m)} \mid \tilde x^{(m)})}
        \quad\text{(IWAE_ELBO)},

    with :math:`\tilde x^{(m)} \sim p(\tilde x \mid x)` and :math:`z^{(k|m)} \sim q(z \mid \tilde x^{(m)})`
    (with vectorized particles the ``K`` particles share each corruption, as in the paper; with looped
    particles every particle draws its own corruptions). Both are lower bounds of the clean objective
    (Shu et al., Proposition 1).

    **Partial denoising** (AIR eq. 16): ``alpha`` :math:`=\alpha \in [0, 1]` weights the denoising
    objective against the clean one, :math:`\alpha\,\mathcal{L}_\text{DVAE} + (1 - \alpha)\,\mathcal{L}_\text{VAE}`.
    Because both are expectations over what the encoder sees, this is the denoising objective for the
    mixture corruption :math:`\alpha\,p(\tilde x \mid x) + (1 - \alpha)\,\delta_x`: each corrupted copy
    is replaced by the clean row with probability :math:`1 - \alpha` (an unbiased estimate).
    ``alpha = 1`` is full denoising, ``alpha = 0`` the plain VAE.

    **Why the corruption is not a sample site.** :math:`\tilde x` is drawn with plain torch sampling
    (seeded by :func:`pyro.set_rng_seed`), outside the probabilistic program. As a ``pyro.sample``
    site of the guide it would be a latent variable: every ELBO would add :math:`-\log p(\tilde x|x)` to
    the bound (and salt-and-pepper has no density), :func:`~pyro_noisevae.handlers.beta_scale` would
    scale it, :class:`~pyro_noisevae.infer.IWAE_ELBO` would fold it into the importance weights, and
    model/guide validation would flag a guide site missing from the model. Marking it auxiliary would
    still leave its log-probability in the guide's cost. As a noise input of the encoder it changes
    the proposal, never the model.

    **M > 1 corruptions** run the wrapped guide inside ``pyro.plate("corruptions", M)`` at dim
    ``-(max_plate_nesting + 1)`` with scale :math:`1/M`, and the guide receives
    :math:`\tilde x` of shape ``(M, 1, ..., *x.shape)``; it must broadcast over that leading dim (use
    :meth:`from_encoder` for an encoder ``x -> (loc, scale)``, which does). The model must then run in
    the same plate: use :meth:`wrap_model`. With ``M = 1`` no plate is added and the model needs no
    wrapping (:meth:`wrap_model` then only registers its parameters for ``ELBOModule``). Set the ELBO's
    ``max_plate_nesting`` to :attr:`elbo_max_plate_nesting` (or leave it to be inferred).

    Works with :class:`~pyro.infer.Trace_ELBO`, :class:`~pyro.infer.TraceMeanField_ELBO` and
    :class:`~pyro_noisevae.infer.IWAE_ELBO` (DIWAE)::

        guide = DenoisingGuide(vae.guide, functools.partial(SaltAndPepper, rate=0.1))
        svi = SVI(vae.model, guide, Adam({"lr": 1e-3}), IWAE_ELBO(num_particles=5))        # DIWAE, M = 1

        guide = DenoisingGuide.from_encoder(vae.encoder, make_corruption("gaussian", 0.1), num_corruptions=4)
        loss = IWAE_ELBO(num_particles=5).differentiable_loss(guide.wrap_model(vae.model), guide, x)

    :param guide: a Pyro guide ``guide(x, *args, **kwargs)``.
    :param corruption: a factory ``clean -> distribution`` (e.g. ``functools.partial(GaussianCorruption,
        sigma=0.1)``, :func:`~pyro_noisevae.distributions.make_corruption`, or a
        :class:`~pyro_noisevae.distributions.Corruption` subclass), whose ``sample(s)`` has shape
        ``s + x.shape``; ``None`` for no corruption.
    :param int num_corruptions: :math:`M \ge 1` corrupted copies per data point.
    :param float alpha: partial-denoising weight :math:`\alpha \in [0, 1]` (default 1: full denoising).
    :param int max_plate_nesting: plates nested in the wrapped guide and model (default 1, the data plate).
    :param input_arg: position (int) or keyword (str) of the input to corrupt (default 0).
    :param int input_event_dim: rightmost dims of the input that are not batch dims (default 1: rows
        of shape ``(B, D)``).
    :param str plate_name: name of the corruption plate.
    """

    def __init__(
        self,
        guide,
        corruption,
        *,
        num_corruptions=1,
        alpha=1.0,
        max_plate_nesting=1,
        input_arg=0,
        input_event_dim=1,
        plate_name="corruptions",
    ):
        super().__init__()
        if not callable(guide):
            raise TypeError(f"guide must be callable, got {type(guide).__name__}")
        if corruption is not None and not callable(corruption):
            raise TypeError(
                "corruption must be a factory clean -> distribution (e.g. functools.partial(GaussianCorruption, "
                f"sigma=0.1)) or None, got {type(corruption).__name__}"
            )
        if isinstance(corruption, Distribution):
            raise TypeError(
                "corruption must be a factory clean -> distribution, not a distribution instance; pass e.g. "
                "functools.partial(GaussianCorruption, sigma=0.1)"
            )
        if not _is_int(num_corruptions) or num_corruptions < 1:
            raise ValueError(f"num_corruptions must be an integer >= 1, got {num_corruptions!r}")
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (partial-denoising weight) must be in [0, 1], got {alpha!r}")
        if not _is_int(max_plate_nesting) or max_plate_nesting < 0:
            raise ValueError(f"max_plate_nesting must be an integer >= 0, got {max_plate_nesting!r}")
        if not isinstance(input_arg, (int, str)) or isinstance(input_arg, bool):
            raise TypeError(f"input_arg must be a position (int) or a keyword (str), got {input_arg!r}")
        if not _is_int(input_event_dim) or input_event_dim < 0:
            raise ValueError(f"input_event_dim must be an integer >= 0, got {input_event_dim!r}")
        self._guide = guide
        owner = _owner(guide)
        if owner is not None:
            self.owner = owner  # see _CorruptionPlateModel
        self.corruption = corruption
        self.num_corruptions = int(num_corruptions)
        self.alpha = alpha
        self.max_plate_nesting = int(max_plate_nesting)
        self.input_arg = input_arg
        self.input_event_dim = int(input_event_dim)
        self.plate_name = plate_name

    # ----------------------------------------------------------------------------------------------

    @classmethod
    def from_encoder(cls, encoder, corruption, *, site="z", data_plate="data", **kwargs):
        r"""
        Build the guide :math:`q(z \mid \tilde x)` directly from an encoder, mirroring
        :meth:`pyro_noisevae.models.VAE.guide`: ``guide(x, num_data=None)`` samples
        ``site ~ Normal(loc, scale).to_event(1)`` inside ``pyro.plate(data_plate, num_data or B)``
        (subsampled with scale :math:`N/B` when ``num_data`` is given), where
        ``encoder(x~) -> (loc, scale)`` (each ``(..., B, z_dim)``) or ``encoder(x~) -> Distribution``
        (used as is). The encoder accepts leading corruption dims, so any ``num_corruptions`` works.

        :param encoder: ``nn.Module`` or callable ``x (*, B, D) -> (loc, scale)`` or a distribution.
        :param corruption: as in :class:`DenoisingGuide`.
        :param str site: latent site name (default ``"z"``).
        :param str data_plate: data plate name (default ``"data"``).
        :param kwargs: the other :class:`DenoisingGuide` options; ``input_event_dim`` also locates the data dim
            (the last batch dim of ``x``), so scalar data points (``input_event_dim=0``) and images work too.
        """
        if not callable(encoder):
            raise TypeError(f"encoder must be callable, got {type(encoder).__name__}")
        module = encoder if isinstance(encoder, torch.nn.Module) else None
        event_dim = kwargs.get("input_event_dim", 1)  # validated by cls(...) below, before any call

        def encoder_guide(x, num_data=None):
            # the data dim is the last batch dim (leading corruption dims come before it); an unbatched x is one row
            batch = x.shape[-event_dim - 1] if x.dim() > event_dim else 1
            if num_data is None or num_data == batch:
                plate = pyro.plate(data_plate, batch)
            elif num_data < batch:
                raise ValueError(f"num_data={num_data} is smaller than the batch size {batch}")
            else:
                plate = pyro.plate(data_plate, num_data, subsample=torch.arange(batch, device=x.device))
            net = encoder
            if module is not None and not isinstance(module, PyroModule):
                net = pyro.module(f"{site}_encoder", module)  # plain nn.Module: register with the param store
            with plate:
                out = net(x)
                fn = out if isinstance(out, Distribution) else dist.Normal(*out).to_event(1)
                return pyro.sample(site, fn)

        guide = cls(encoder_guide, corruption, **kwargs)
        if module is not None:
            guide.encoder = module
        return guide

    # ----------------------------------------------------------------------------------------------

    @property
    def plate_dim(self):
        """Dim of the corruption plate: ``-(max_plate_nesting + 1)``."""
        return -(self.max_plate_nesting + 1)

    @property
    def elbo_max_plate_nesting(self):
        """``max_plate_nesting`` to give the ELBO (particle plate not included): +1 when ``M > 1``."""
        return self.max_plate_nesting + (1 if self.num_corruptions > 1 else 0)

    def corrupt(self, x):
        r"""
        Draw the encoder's inputs: ``M`` corruptions of ``x`` (no gradient), each row replaced by the
        clean row with probability :math:`1 - \alpha`.

        :param torch.Tensor x: clean input, shape ``batch_shape + event_shape`` with
            ``len(event_shape) == input_event_dim``.
        :returns: ``x~`` of shape ``x.shape`` when ``M = 1``, else ``(M,) + (1,) * pad + x.shape`` with the
            ``M`` dim at ``plate_dim`` (relative to the batch dims).
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the input to corrupt must be a torch.Tensor, got {type(x).__name__}")
        batch_ndim = x.dim() - self.input_event_dim
        if batch_ndim < 0 or batch_ndim > self.max_plate_nesting:
            raise ValueError(
                f"input of shape {tuple(x.shape)} has {batch_ndim} batch dims (input_event_dim="
                f"{self.input_event_dim}), but max_plate_nesting={self.max_plate_nesting}"
            )
        M = self.num_corruptions
        sample_shape = torch.Size() if M == 1 else torch.Size((M,) + (1,) * (self.max_plate_nesting - batch_ndim))
        with torch.no_grad():
            if self.corruption is None or self.alpha == 0.0:
                noisy = x.expand(sample_shape + x.shape)
            else:
                noisy = self.corruption(x).sample(sample_shape)
                if not isinstance(noisy, torch.Tensor) or noisy.shape != sample_shape + x.shape:
                    raise ValueError(
                        f"corruption sample has shape {tuple(getattr(noisy, 'shape', ()))}, expected "
                        f"{tuple(sample_shape + x.shape)} (sample_shape + x.shape); a corruption factory must "
                        "return a distribution with batch_shape + event_shape == x.shape"
                    )
                noisy = noisy.to(x.dtype)
                if self.alpha < 1.0:
                    rows = noisy.shape[: noisy.dim() - self.input_event_dim]
                    keep = torch.rand(rows, dtype=x.dtype, device=x.device) >= self.alpha
                    keep = keep.reshape(rows + (1,) * self.input_event_dim)
                    noisy = torch.where(keep, x.expand_as(noisy), noisy)
        return noisy

    def _replace_input(self, args, kwargs):
        if isinstance(self.input_arg, str):
            if self.input_arg not in kwargs:
                raise TypeError(f"DenoisingGuide: keyword input {self.input_arg!r} missing from the guide call")
            kwargs = dict(kwargs)
            kwargs[self.input_arg] = self.corrupt(kwargs[self.input_arg])
            return args, kwargs
        if self.input_arg >= len(args):
            raise TypeError(
                f"DenoisingGuide: the guide was called with {len(args)} positional args but input_arg="
                f"{self.input_arg}; pass the data positionally or set input_arg to its keyword"
            )
        args = list(args)
        args[self.input_arg] = self.corrupt(args[self.input_arg])
        return tuple(args), kwargs

    def forward(self, *args, **kwargs):
        """Run the wrapped guide on corrupted inputs (inside the corruption plate when ``M > 1``)."""
        args, kwargs = self._replace_input(args, kwargs)
        if self.num_corruptions == 1:
            return self._guide(*args, **kwargs)
        with pyro.plate(self.plate_name, self.num_corruptions, dim=self.plate_dim), poutine.scale(
            scale=1.0 / self.num_corruptions
        ), _ReplicateMessenger(self.plate_name):
            return self._guide(*args, **kwargs)

    @property
    def base_guide(self):
        """The wrapped guide, which sees clean inputs when called directly (evaluation of the amortized q(z | x))."""
        return self._guide

    @staticmethod
    def unwrap_model(model):
        """The model inside a :meth:`wrap_model` wrapper (``model`` itself otherwise)."""
        return model._model if isinstance(model, _CorruptionPlateModel) else model

    def wraps(self, model):
        """True if ``model`` is this guide's :meth:`wrap_model` of some model (it runs in the corruption plate)."""
        return isinstance(model, _CorruptionPlateModel) and model._plate_args == (
            self.plate_name, self.num_corruptions, self.plate_dim)

    def wrap_model(self, model):
        r"""
        The model matching this guide: with ``M > 1`` it runs ``model`` inside the same corruption plate
        (dim :attr:`plate_dim`, scale :math:`1/M`), so each corrupted copy is scored against the clean
        data; with ``M = 1`` it is ``model`` itself.

        :param model: the Pyro model ``model(x, *args, **kwargs)`` (the clean data are passed unchanged).
        :returns: an ``nn.Module`` calling ``model``; it registers the module behind ``model`` (a module or
            the instance of a bound method) so that ``elbo(wrapped_model, guide).parameters()`` sees it.
        """
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        return _CorruptionPlateModel(model, self)

    def extra_repr(self):
        return (
            f"num_corruptions={self.num_corruptions}, alpha={self.alpha}, "
            f"max_plate_nesting={self.max_plate_nesting}, corruption={self.corruption!r}"
        )

