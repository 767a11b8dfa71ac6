r"""
The importance-weighted bound as one differentiable surrogate: its value is the bound, its gradient the standard or
the doubly-reparameterized (DReG) estimator. The single implementation under :class:`~pyro_noisevae.infer.IWAE_ELBO`,
IW-SVI's local refits and the library VAE's closed-form loss (:mod:`pyro_noisevae.models.fused`).
"""

import math

import torch

__all__ = ["iwae_objective", "register_dreg_hook"]


def _left_pad(tensor, ndim):
    return tensor.reshape((1,) * (ndim - tensor.dim()) + tensor.shape)


def register_dreg_hook(value, weights, event_dim):
    r"""
    Multiply the gradient reaching the reparameterized draw ``value`` by its normalized importance weight
    :math:`\tilde w_k` (the second factor of DReG's :math:`\tilde w_k^2`). ``weights`` has the particle and
    kept plate dims of the log weights; it is aligned to ``value``'s batch dims (``event_dim`` rightmost
    dims are the event).
    """
    batch_ndim = value.dim() - event_dim
    if weights.dim() > batch_ndim:
        lead = weights.shape[: weights.dim() - batch_ndim]
        if any(s != 1 for s in lead):
            raise RuntimeError(
                f"gradient_estimator='dreg': a guide value of shape {tuple(value.shape)} lacks the particle "
                "and plate dims of the importance weights; sample every latent inside the plates")
        weights = weights.reshape(weights.shape[weights.dim() - batch_ndim:])
    weights = _left_pad(weights, batch_ndim)
    weights = weights.reshape(weights.shape + (1,) * event_dim)
    if torch.broadcast_shapes(weights.shape, value.shape) != value.shape:
        raise RuntimeError(
            f"gradient_estimator='dreg': guide value of shape {tuple(value.shape)} is broadcast along a plate "
            f"of the importance weights {tuple(weights.shape)}; expand the guide distribution to the plate")
    weights = weights.to(value.dtype)
    value.register_hook(lambda grad: grad * weights)


def iwae_objective(log_w, log_w_dreg=None, dreg_values=(), score=None):
    r"""
    The importance-weighted bound of ``K`` particles along dim 0, as one differentiable surrogate whose value
    is the bound and whose gradient is the chosen estimator (Burda et al. 2016; Tucker et al. 2019):

    .. math::

        \mathcal L_K = \log \frac1K \sum_{k=1}^K w_k, \qquad
        \nabla \mathcal L_K = \sum_k \tilde w_k \nabla \log w_k \;\; (\text{standard}), \qquad
        \tilde w_k = w_k / \textstyle\sum_j w_j .

    * standard: pass ``log_w`` only (plus ``score``, the summed :math:`\log q` of non-reparameterized guide
      sites, for the score-function term :math:`\mathcal L_K \sum_k \nabla \log q(z_k)`);
    * DReG: pass ``log_w_dreg`` (the same values with :math:`\log q` evaluated at stopped guide parameters)
      and ``dreg_values``, a list of ``(k, z, event_dim)`` of reparameterized draws (``k`` the particle index
      for looped particles, or ``None`` when ``z`` carries the particle dim): the guide gradient becomes
      :math:`\sum_k \tilde w_k^2\, \partial \log w_k / \partial z_k \cdot \partial z_k / \partial \phi`.

    :param torch.Tensor log_w: ``(K, *batch)`` log weights.
    :returns: ``(*batch)`` tensor: value :math:`\mathcal L_K`, gradient the estimator.
    """
    K = log_w.shape[0]
    log_total = torch.logsumexp(log_w, 0)
    bound = log_total - math.log(K)
    # normalized weights (torch.softmax along dim 0 is much slower on CPU)
    # A particle of weight zero (log w = -inf, e.g. a draw outside the model's support) contributes nothing, not
    # 0 * inf = NaN; a point whose every weight is zero has bound -inf and no gradient.
    weights = (log_w - log_total).detach().exp().nan_to_num(0.0)
    dead = weights == 0
    if log_w_dreg is not None:
        surrogate = (weights * log_w_dreg.masked_fill(dead, 0.0)).sum(0)
        for k, value, event_dim in dreg_values:
            register_dreg_hook(value, weights if k is None else weights[k], event_dim)
    else:
        surrogate = (weights * log_w.masked_fill(dead, 0.0)).sum(0)
        if isinstance(score, torch.Tensor):
            surrogate = surrogate + bound.detach().nan_to_num(0.0, neginf=0.0) * score.sum(0)
    return (bound - surrogate).detach() + surrogate
