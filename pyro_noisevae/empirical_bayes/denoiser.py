"""Empirical-Bayes least-squares denoiser of an energy, and the denoising objective learned through it."""

import numbers

import torch

from ..infer.fit_loop import FitLoop
from .energy import Energy, check_points, check_sigma

__all__ = ["bayes_estimator", "denoising_loss", "fit_denoiser"]


def _check_energy(energy):
    if not isinstance(energy, Energy):
        raise TypeError(
            f"energy must be a pyro_noisevae.empirical_bayes.Energy (ELBOEnergy, DEEN, GaussianEnergy, ...), "
            f"got {type(energy).__name__}"
        )


def bayes_estimator(energy, y, sigma, create_graph=False):
    r"""
    Empirical-Bayes least-squares estimator (Miyasawa/Tweedie) of :math:`X` from :math:`Y = X + N(0, \sigma^2 I)`:

    .. math::

        \hat x(y) = \mathbb{E}[X \mid Y = y] = y + \sigma^2 \nabla_y \log p(y) = y - \sigma^2 \nabla_y f(y),

    exact when :math:`f` is the true energy :math:`-\log p(y) + c` of the noisy variable.

    :param Energy energy: the energy :math:`f`.
    :param torch.Tensor y: noisy points, shape ``(B, D)``.
    :param float sigma: noise level :math:`\sigma > 0` (the one the energy was learned at).
    :param bool create_graph: keep the graph for double backpropagation (training).
    :returns: :math:`\hat x(y)`, shape ``(B, D)`` (detached unless ``create_graph``).
    """
    _check_energy(energy)
    sigma = check_sigma(sigma)
    check_points(y, energy.dim)
    _, grad = energy.energy_and_grad(y, create_graph=create_graph)
    x_hat = y - sigma**2 * grad
    return x_hat if create_graph else x_hat.detach()


def denoising_loss(energy, x, sigma, num_noise=1, generator=None, noise=None):
    r"""
    The denoising objective of neural empirical Bayes (DEEN) and unnormalized variational Bayes (UVB):

    .. math::

        \mathcal{L}(\theta) = \mathbb{E}_{x}\,\mathbb{E}_{\varepsilon \sim N(0, I)}
        \big\lVert x - \hat x_\theta(x + \sigma \varepsilon) \big\rVert^2,
        \qquad \hat x_\theta(y) = y - \sigma^2 \nabla_y f_\theta(y),

    a Monte Carlo estimate over the batch and ``num_noise`` noise draws per point. Its gradient in
    :math:`\theta` goes through :math:`\nabla_y f_\theta` (double backpropagation). Minimizing it over
    all functions makes :math:`\hat x_\theta` the posterior mean, i.e. :math:`f_\theta` the energy of
    :math:`Y` up to a constant.

    :param Energy energy: energy :math:`f_\theta` (e.g. :class:`~pyro_noisevae.empirical_bayes.ELBOEnergy`
        for UVB, :class:`~pyro_noisevae.empirical_bayes.DEEN`).
    :param torch.Tensor x: clean batch, shape ``(B, D)``.
    :param float sigma: noise level :math:`\sigma > 0`.
    :param int num_noise: noise draws per clean point.
    :param torch.Generator generator: optional generator for the noise.
    :param torch.Tensor noise: optional standard normal draws :math:`\varepsilon` to use instead of drawing
        them, shape ``(num_noise * B, D)`` (e.g. drawn on a CPU generator for a model on a GPU).
    :returns: scalar loss (mean over the ``B * num_noise`` noisy points of the squared error summed over D).
    """
    _check_energy(energy)
    sigma = check_sigma(sigma)
    check_points(x, energy.dim, name="x")
    if isinstance(num_noise, bool) or not isinstance(num_noise, int) or num_noise < 1:
        raise ValueError(f"num_noise must be an integer >= 1, got {num_noise!r}")
    x = x.repeat(num_noise, 1) if num_noise > 1 else x
    if noise is None:
        eps = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    else:
        if not isinstance(noise, torch.Tensor) or noise.shape != x.shape:
            raise ValueError(f"noise must be a tensor of shape {tuple(x.shape)}, got "
                             f"{tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__}")
        eps = noise.to(dtype=x.dtype, device=x.device)
    y = x + sigma * eps
    x_hat = bayes_estimator(energy, y, sigma, create_graph=True)
    return (x - x_hat).pow(2).sum(-1).mean()


def fit_denoiser(energy, data, sigma, *, epochs=1, batch_size=100, lr=1e-3, num_noise=1, max_steps=None, progress=True,
                 seed=None, device=None, optimizer=None, callback=None):
    r"""
    Train an energy by minimizing :func:`denoising_loss` with Adam over mini-batches of ``data``, on the
    package's one optimisation loop (:class:`~pyro_noisevae.training.FitLoop`).

    :param Energy energy: the energy to train (its ``parameters()`` are optimized). An energy that has no
        parameters yet (an :class:`~pyro_noisevae.empirical_bayes.ELBOEnergy` of plain Pyro functions that
        register their networks with ``pyro.module`` finds them on its first call) is first called once,
        without gradients, on the first ``batch_size`` points of ``data`` plus noise.
    :param torch.Tensor data: clean data, shape ``(N, D)``.
    :param float sigma: noise level.
    :param int epochs: passes over the data.
    :param int batch_size: mini-batch size.
    :param float lr: Adam learning rate (ignored when ``optimizer`` is given).
    :param int num_noise: noise draws per point and step.
    :param int max_steps: stop after this many optimizer steps in total (optional; the epoch in progress is
        closed there).
    :param bool progress: show a tqdm progress bar.
    :param int seed: seed of the shuffling and noise generator (and of torch's global RNG, which
        samples the guide's latents), for reproducibility.
    :param device: device to train on (default: the energy's parameters' device).
    :param torch.optim.Optimizer optimizer: optional optimizer to use (e.g. one restored from a checkpoint).
    :param callable callback: optional ``callback(epoch, mean_loss)`` called after every epoch (``epoch``
        counts from 0).
    :returns: list of per-epoch mean losses :math:`\lVert x - \hat x \rVert^2` per point: the mean over the
        epoch's steps of each mini-batch's mean (the loop's convention; it weights a short last batch like a
        full one, and equals the mean over points when ``batch_size`` divides ``N``).
    :raises ValueError: if the energy has no trainable parameters, even after that first call.
    :raises FloatingPointError: if the loss becomes NaN or infinite.
    """
    _check_energy(energy)
    sigma = check_sigma(sigma)
    check_points(data, energy.dim, name="data")
    batch_size = _check_count(batch_size, "batch_size")
    epochs = _check_count(epochs, "epochs", minimum=0)
    max_steps = None if max_steps is None else _check_count(max_steps, "max_steps")
    params = [p for p in energy.parameters() if p.requires_grad]
    if not params:
        # an ELBOEnergy of plain Pyro functions that register their networks with pyro.module only learns
        # its parameters on its first call: make that call (before seeding, so the seeded run is unchanged)
        x0 = data[:batch_size].to(device if device is not None else data.device)
        y0 = x0 + sigma * torch.randn(x0.shape, dtype=x0.dtype, device=x0.device)
        with torch.no_grad():
            energy(y0)
        params = [p for p in energy.parameters() if p.requires_grad]
        if not params:
            raise ValueError(
                f"{type(energy).__name__} has no trainable parameters, even after a first call on a batch: "
                "register the networks it uses (with pyro.module inside the model/guide, or by passing methods "
                "of an nn.Module) so that energy.parameters() finds them"
            )
    if device is None:
        device = params[0].device
    energy.to(device)
    opt = optimizer if optimizer is not None else torch.optim.Adam(params, lr=lr)
    # one CPU generator draws every epoch's order and (on CPU) the noise, in the order of the steps
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(int(seed))
        torch.manual_seed(int(seed))

    def loss_fn(x):
        x = x.to(device)
        return denoising_loss(energy, x, sigma, num_noise=num_noise, generator=gen if x.device.type == "cpu" else None)

    loop = FitLoop(
        loss_fn, opt, data, batch_size=batch_size, epochs=epochs, max_steps=max_steps,
        shuffle=lambda epoch: torch.randperm(data.shape[0], generator=gen),
        on_epoch_end=None if callback is None else (lambda loop, mean: callback(loop.epoch - 1, mean)),
        progress=progress, desc="denoise epoch", handle_signals=False,
    )
    return loop.run().losses


def _check_count(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
