"""Robust PCA experiments: the synthetic sweep and its figure, end to end at a tiny size."""

import pytest

from pyro_noisevae.evaluation import plot_subspace_error
from pyro_noisevae.experiments.robust_pca import subspace_error_vs_outlier_rate



def test_sweep_and_plot_smoke():
    import matplotlib.pyplot as plt

    recs = subspace_error_vs_outlier_rate(
        rates=(0.0, 0.2), methods=("pca", "per-dimension"), num_data=60, x_dim=8, steps=5
    )
    assert len(recs) == 4 and {r["method"] for r in recs} == {"pca", "per-dimension"}
    assert all(0 <= r["subspace_error"] <= 1 for r in recs)
    fig = plot_subspace_error(recs)
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        subspace_error_vs_outlier_rate(methods=("ica",))
