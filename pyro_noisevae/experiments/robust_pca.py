"""Robust PCA experiments: PCA against linear VAEs with a learned decoder variance, on data with gross outliers.

Used by the exact-versus-amortized tutorial; :func:`~pyro_noisevae.evaluation.plot_subspace_error` draws
the records of either experiment.
"""

import time

import torch

from .._checks import check_latent_dim, check_matrix
from ..data.outliers import corrupt_pixels, low_rank_plus_sparse
from ..models.linear import ppca_mle, subspace_distance
from ..models.robust import NOISE_MODELS, RobustLinearVAE, fit_robust

__all__ = ["image_outlier_experiment", "subspace_error_vs_outlier_rate"]


def _pca_basis(x, k):
    xc = x - x.mean(0)
    return torch.linalg.svd(xc.to(torch.float64), full_matrices=False)[2][:k].T


def subspace_error_vs_outlier_rate(rates=(0.0, 0.05, 0.1, 0.2, 0.3),
                                   methods=("pca", "shared", "per-dimension", "per-entry"), num_data=300, x_dim=20,
                                   rank=2, steps=600, lr=0.05, seed=0, progress=False, **data_kwargs):
    r"""
    Synthetic robust-PCA experiment: for each outlier rate, draw
    :func:`~pyro_noisevae.data.outliers.low_rank_plus_sparse` data and report the subspace error
    :math:`\sin\theta_{\max}` (:func:`~pyro_noisevae.models.linear.subspace_distance`) between the true
    rank-``r`` subspace and the one recovered by each method: ``"pca"`` (top-``r`` principal components) and
    :class:`~pyro_noisevae.models.robust.RobustLinearVAE` with each decoder-variance structure (started from
    the pPCA fit, trained with :func:`~pyro_noisevae.models.robust.fit_robust` for ``steps`` steps).

    :returns: list of dicts ``{"outlier_rate", "method", "subspace_error", "seconds"}``.
    """
    for m in methods:
        if m != "pca" and m not in NOISE_MODELS:
            raise ValueError(f"unknown method {m!r}; use 'pca' or one of {NOISE_MODELS}")
    records = []
    for i, rate in enumerate(rates):
        data = low_rank_plus_sparse(num_data, x_dim, rank, rate, seed=seed + i, **data_kwargs)
        x = data.data.float()
        fit = ppca_mle(x, rank)
        for method in methods:
            t0 = time.time()
            if method == "pca":
                basis = _pca_basis(x, rank)
            else:
                model = RobustLinearVAE(x_dim, rank, num_data, noise=method, init=fit, init_data=x)
                fit_robust(model, x, steps=steps, lr=lr, seed=seed + i)
                basis = model.W.detach()
            err = subspace_distance(basis, data.basis)
            records.append(dict(outlier_rate=float(rate), method=method, subspace_error=err, seconds=time.time() - t0))
            if progress:
                print(f"rate={rate:.2f} {method:>13s}: subspace error {err:.3f}", flush=True)
    return records


def image_outlier_experiment(images, rates=(0.0, 0.05, 0.1, 0.2), latent_dim=10, methods=("pca", "per-entry"),
                             steps=600, lr=0.02, mode="salt-and-pepper", seed=0, progress=False):
    r"""
    Real images with a fraction of corrupted pixels: the clean principal subspace is the top-``K``
    PCA subspace of the *clean* images; each method sees only the corrupted images (see
    :func:`~pyro_noisevae.data.outliers.corrupt_pixels`). Reports, per rate and method, the subspace error to
    the clean subspace (root-mean-square sine of the principal angles,
    :func:`~pyro_noisevae.models.linear.subspace_distance` with
    ``reduction="rms"``: trailing image components have close eigenvalues, so the largest angle alone
    is unstable) and the mean squared error between the method's reconstruction and the clean images
    (PCA: projection of the corrupted image on its own principal subspace; the VAE: :math:`W m_n + b`).

    :param torch.Tensor images: ``(N, D)`` clean images in [0, 1].
    :returns: ``(records, examples)``: records as in :func:`subspace_error_vs_outlier_rate` plus
        ``"reconstruction_mse"`` and ``"clean_pca_mse"`` (the error of projecting the clean images on
        their own top-``K`` subspace, the floor for any rank-``K`` linear reconstruction); examples maps
        ``(rate, method)`` -> reconstructions ``(N, D)`` and ``(rate, "corrupted")`` -> the corrupted input.
    """
    images = check_matrix(images, "images").float()
    N, D = images.shape
    K = check_latent_dim(latent_dim, D, strict=True)
    clean_basis = _pca_basis(images, K)
    mu = images.mean(0)
    P = clean_basis.float()
    # the best any rank-K linear method can do: project the clean images on their own principal subspace
    clean_pca_mse = float(((images - mu) @ P @ P.T + mu - images).pow(2).mean())
    records, examples = [], {}
    for i, rate in enumerate(rates):
        x, _ = corrupt_pixels(images, rate, mode=mode, seed=seed + i)
        examples[(float(rate), "corrupted")] = x
        fit = ppca_mle(x, K)
        for method in methods:
            t0 = time.time()
            if method == "pca":
                basis = _pca_basis(x, K).float()
                mx = x.mean(0)
                recon = (x - mx) @ basis @ basis.T + mx
            else:
                if method not in NOISE_MODELS:
                    raise ValueError(f"unknown method {method!r}; use 'pca' or one of {NOISE_MODELS}")
                model = RobustLinearVAE(D, K, N, noise=method, init=fit, init_data=x, min_variance=1e-4)
                fit_robust(model, x, steps=steps, lr=lr, seed=seed + i)
                basis, recon = model.W.detach(), model.reconstruct()
            rec = dict(
                outlier_rate=float(rate),
                method=method,
                subspace_error=subspace_distance(basis, clean_basis, reduction="rms"),
                reconstruction_mse=float((recon - images).pow(2).mean()),
                clean_pca_mse=clean_pca_mse,
                seconds=time.time() - t0,
            )
            records.append(rec)
            examples[(float(rate), method)] = recon
            if progress:
                print(f"rate={rate:.2f} {method:>13s}: subspace error {rec['subspace_error']:.3f}, "
                      f"mse {rec['reconstruction_mse']:.4f}", flush=True)
    return records, examples
