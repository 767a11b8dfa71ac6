"""Datasets from an offline data root (MNIST, binarized MNIST, Frey Face, Caltech 101 Silhouettes), noise injection,
synthetic data with gross outliers."""

from .datasets import DATASETS, ENV_VAR, SPLITS, Dataset, clear_cache, data_root, load_dataset
from .noise import add_gaussian_noise, dynamic_binarize
from .outliers import LowRankSparseData, corrupt_pixels, low_rank_plus_sparse

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "SPLITS",
    "Dataset",
    "add_gaussian_noise",
    "clear_cache",
    "data_root",
    "dynamic_binarize",
    "load_dataset",
]
__all__ += ["LowRankSparseData", "corrupt_pixels", "low_rank_plus_sparse"]
__all__[:] = sorted(set(__all__))
