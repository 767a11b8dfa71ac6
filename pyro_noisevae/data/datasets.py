"""Offline loaders for MNIST, binarized MNIST, Frey Face and Caltech 101 Silhouettes."""

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _readers
from .noise import add_gaussian_noise, dynamic_binarize

__all__ = ["DATASETS", "ENV_VAR", "SPLITS", "Dataset", "clear_cache", "data_root", "load_dataset"]

#: names accepted by :func:`load_dataset`
DATASETS = ("mnist", "binarized-mnist", "frey-face", "caltech101")
#: splits accepted by :func:`load_dataset`
SPLITS = ("train", "valid", "test", "trainval")
#: environment variable naming the data root
ENV_VAR = "PYRO_NOISEVAE_DATA"

_BINARIZE = (None, "threshold", "dynamic")
_IMAGE_SHAPES = {"mnist": (28, 28), "binarized-mnist": (28, 28), "frey-face": (28, 20), "caltech101": (28, 28)}
_BINARY = {"binarized-mnist", "caltech101"}
_MNIST_TRAIN = 50000  # first 50,000 official training images; the last 10,000 are the validation split
_FREY_SPLIT_SEED = 0  # fixed, independent of load_dataset's ``seed``: the split never changes
_FREY_SIZES = {"train": 1565, "valid": 200, "test": 200}


def _resolve_root(root):
    """``(path, how)``: the data root and a sentence saying how it was chosen."""
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}")
        return Path(root).expanduser(), "given as the root argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"from the {ENV_VAR} environment variable"
    return Path("data"), f"the default ./data, because no root argument was given and {ENV_VAR} is not set"


def data_root(root=None):
    """
    The folder holding the datasets: ``root`` if given, else the environment variable
    ``PYRO_NOISEVAE_DATA`` (when set and non-empty), else ``./data`` relative to the working directory.

    Expected layout below it (the layout of the shared offline copy)::

        MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte      (torchvision's layout)
        binarized_mnist/binarized_mnist_{train,valid,test}.mat       (variable X)
        frey_face/frey_rawface.mat                                   (variable ff)
        caltech101_silhouettes/caltech101_silhouettes_28_split1.mat

    :param root: an explicit folder (``str`` or :class:`os.PathLike`), or ``None``.
    :returns: the folder, with ``~`` expanded (it need not exist).
    :rtype: pathlib.Path
    """
    return _resolve_root(root)[0]


def clear_cache():
    """
    Empty the in-process cache of raw arrays that makes repeated :func:`load_dataset` calls cheap.
    The cache is keyed on the file paths, sizes and modification times, so clearing it is only needed
    to free memory.
    """
    _readers.clear_cache()


@dataclass(repr=False, eq=False)
class Dataset:
    """
    One split of an image dataset, held in memory.

    :ivar str name: dataset name (one of :data:`DATASETS`, or any label for hand-made data).
    :ivar str split: split name (one of :data:`SPLITS`).
    :ivar torch.Tensor data: float32 tensor of shape ``(N, D)`` with ``D = H * W``; each row is one image
        flattened in row-major order. Values lie in :math:`[0, 1]` unless noise was added.
    :ivar targets: long tensor of shape ``(N,)`` with class labels ``0..C-1``, or ``None`` (unlabelled data).
    :ivar tuple image_shape: ``(H, W)``.
    :ivar classes: class names (index ``k`` names label ``k``), or ``None``.
    :ivar binarize: the binarization applied (``None``, ``"threshold"`` or ``"dynamic"``).
    :ivar float noise_std: standard deviation of the Gaussian noise added to ``data`` (0 for none).
    :ivar int seed: seed of the random binarization and noise.
    """

    name: str
    split: str
    data: torch.Tensor
    targets: torch.Tensor | None
    image_shape: tuple
    classes: tuple | None = None
    binarize: str | None = None
    noise_std: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.data, torch.Tensor) or self.data.dim() != 2:
            raise ValueError(f"Dataset.data must be a 2-D tensor (N, D), got {getattr(self.data, 'shape', self.data)}")
        self.image_shape = tuple(int(s) for s in self.image_shape)
        if len(self.image_shape) != 2 or math.prod(self.image_shape) != self.data.shape[1]:
            raise ValueError(
                f"Dataset.image_shape {self.image_shape} must be (H, W) with H * W == data.shape[1] "
                f"= {self.data.shape[1]}"
            )
        if self.targets is not None and (
            not isinstance(self.targets, torch.Tensor) or self.targets.shape != self.data.shape[:1]
        ):
            raise ValueError(
                f"Dataset.targets must be None or a tensor of shape ({self.data.shape[0]},), "
                f"got {getattr(self.targets, 'shape', self.targets)}"
            )

    def __len__(self):
        return self.data.shape[0]

    @property
    def images(self):
        """The data as images, shape ``(N, H, W)`` (a view when ``data`` is contiguous, as loaded)."""
        return self.data.reshape(-1, *self.image_shape)

    def __repr__(self):
        extras = "" if self.binarize is None else f", binarize={self.binarize!r}"
        extras += "" if not self.noise_std else f", noise_std={self.noise_std}"
        labelled = "unlabelled" if self.targets is None else "labelled"
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, image_shape={self.image_shape}, "
            f"{labelled}{extras})"
        )


def _missing_error(name, missing, root, how, download):
    rel = {
        "mnist": "MNIST/raw/ (torchvision's layout, uncompressed IDX files)",
        "binarized-mnist": "binarized_mnist/",
        "frey-face": "frey_face/",
        "caltech101": "caltech101_silhouettes/",
    }[name]
    lines = [
        f"dataset {name!r} not found: missing file(s)",
        *(f"  {p}" for p in missing),
        f"Data root in use: {root} ({how}).",
        f"To fix: put the files there, or point the data root at the folder that contains {rel} "
        f"with the --data-root flag of the CLI, the root argument, or the {ENV_VAR} environment variable.",
    ]
    if name == "mnist":
        gz = [p for p in missing if p.with_name(p.name + ".gz").is_file()]
        if gz and len(gz) == len(missing):
            lines.append(
                "The .gz archives are there: load_dataset('mnist', download=True) extracts them without going online."
            )
        elif not download:
            lines.append(
                "Or call load_dataset('mnist', download=True) (needs internet access) to let torchvision fetch "
                f"MNIST into {root / 'MNIST' / 'raw'}."
            )
    elif download:
        lines.append(f"download=True only fetches MNIST; {name!r} must be copied by hand.")
    return FileNotFoundError("\n".join(lines))


def _frey_indices(split):
    """Indices into the 1965 Frey Face images of ``split`` (a fixed seeded permutation, see :func:`load_dataset`)."""
    # RandomState's stream is frozen by NumPy's compatibility policy, so the split is stable across versions
    perm = np.random.RandomState(_FREY_SPLIT_SEED).permutation(_readers.FREY_SIZE)
    n_train, n_valid = _FREY_SIZES["train"], _FREY_SIZES["valid"]
    bounds = {
        "train": (0, n_train),
        "valid": (n_train, n_train + n_valid),
        "test": (n_train + n_valid, _readers.FREY_SIZE),
        "trainval": (0, n_train + n_valid),
    }
    lo, hi = bounds[split]
    return perm[lo:hi]


def _select(name, split, root):
    """``(images, labels)`` numpy arrays of ``split`` (may be read-only views of the cache)."""
    if name == "mnist":
        x, y = _readers.read_part(name, "test" if split == "test" else "train", root)
        rows = {"train": slice(0, _MNIST_TRAIN), "valid": slice(_MNIST_TRAIN, None)}.get(split, slice(None))
        return x[rows], y[rows]
    if name == "frey-face":
        return _readers.read_part(name, "all", root)[0][_frey_indices(split)], None
    if split == "trainval":
        (xt, yt), (xv, yv) = (_readers.read_part(name, part, root) for part in ("train", "valid"))
        return np.concatenate([xt, xv]), None if yt is None else np.concatenate([yt, yv])
    return _readers.read_part(name, split, root)


def _check_choice(kind, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; valid {kind}s are: {', '.join(map(repr, choices))}")


def load_dataset(name, split="train", root=None, binarize=None, noise_std=0.0, seed=0, download=False):
    r"""
    Load one split of a dataset from the offline data root into memory.

    Datasets (``D = H * W`` pixels per image, rows flattened row-major, values scaled to :math:`[0, 1]`):

    ``"mnist"``
        28 x 28 grey levels; train / valid = first 50,000 / last 10,000 of the official 60,000 training
        images, test = official 10,000 (trainval = all 60,000); targets are digits 0-9.
    ``"binarized-mnist"``
        28 x 28 in {0, 1} (Larochelle & Murray); official 50,000 / 10,000 / 10,000 (trainval 60,000);
        no targets.
    ``"frey-face"``
        28 x 20 grey levels; 1565 / 200 / 200 of the 1965 faces (trainval 1765); no targets.
    ``"caltech101"``
        28 x 28 in {0, 1}; official 4100 / 2264 / 2307 (trainval 6364); targets are classes 0-100.

    * MNIST is read through :class:`torchvision.datasets.MNIST` (raw IDX files in ``<root>/MNIST/raw``);
      pixel intensities are divided by 255.
    * Frey Face has no official split. With ``perm = numpy.random.RandomState(0).permutation(1965)``
      (a frozen NumPy stream), train holds faces ``perm[:1565]``, valid ``perm[1565:1765]`` and test
      ``perm[1765:]``, in that (shuffled) order; face ``j`` is column ``j`` of ``ff`` in
      ``frey_rawface.mat``. The split does not depend on ``seed``. Intensities (8..238) are divided by 255.
    * Caltech 101 Silhouettes: MATLAB stores rows column-major; they are transposed to row-major images
      (object pixels 0, background 1, as in the file; VampPrior's ``1 - x`` is not applied). Labels 1..101
      of the file become 0..100.
    * The binarized MNIST test set is sorted by label: take random subsets, never the first rows.

    Post-processing, in this order, with one ``torch.Generator`` seeded by ``seed``:

    1. ``binarize="threshold"``: :math:`x \leftarrow \mathbb{1}[x > 1/2]`;
       ``binarize="dynamic"``: :math:`x \leftarrow b,\ b \sim \mathrm{Bernoulli}(x)` (one fixed draw; resample
       per mini-batch with :func:`~pyro_noisevae.data.dynamic_binarize` for true dynamic binarization).
       Both leave binary datasets unchanged.
    2. ``noise_std = s > 0``: :math:`y = x + \epsilon,\ \epsilon \sim \mathcal{N}(0, s^2 I)`, unclipped
       (see :func:`~pyro_noisevae.data.add_gaussian_noise`).

    Raw arrays are cached in-process, so loading a split again is cheap; the returned tensors are fresh
    copies that the caller may modify.

    :param str name: one of :data:`DATASETS`.
    :param str split: one of :data:`SPLITS`.
    :param root: data root; ``None`` uses :func:`data_root` (``PYRO_NOISEVAE_DATA``, else ``./data``).
    :param binarize: ``None``, ``"threshold"`` or ``"dynamic"``.
    :param float noise_std: standard deviation :math:`s \ge 0` of additive Gaussian noise.
    :param int seed: seed of the dynamic binarization and of the noise.
    :param bool download: MNIST only: let torchvision download (or extract the ``.gz`` archives) into
        ``<root>/MNIST/raw`` when files are missing. Needs internet access unless the archives are there.
    :returns: the split, with ``data`` of shape ``(N, D)`` (float32) and ``targets`` of shape ``(N,)``
        (int64) or ``None``.
    :rtype: Dataset
    :raises ValueError: for an unknown name, split or binarization, a bad ``noise_std``, or a corrupt file
        (the message names the file).
    :raises FileNotFoundError: if a file is missing (the message names the paths, the data root and how it
        was chosen, and how to fix it).
    """
    _check_choice("dataset", name, DATASETS)
    _check_choice("split", split, SPLITS)
    _check_choice("binarization", binarize, _BINARIZE)
    if not isinstance(noise_std, numbers.Real) or isinstance(noise_std, bool):
        raise TypeError(f"noise_std must be a real number, got {type(noise_std).__name__}")
    if not math.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    root, how = _resolve_root(root)
    root = root.absolute()  # error messages name absolute paths even for a relative root

    files = _readers.required_files(name, root)
    missing = [p for p in files if not p.is_file()]
    if missing and name == "mnist" and download:
        from torchvision.datasets import MNIST

        try:
            MNIST(str(root), train=True, download=True)
        except Exception as e:
            raise RuntimeError(f"downloading MNIST into {root / 'MNIST' / 'raw'} failed: {e}") from e
        missing = [p for p in files if not p.is_file()]
    if missing:
        raise _missing_error(name, missing, root, how, download)

    x, y = _select(name, split, root.resolve())
    data = torch.from_numpy(np.array(x, dtype=np.float32))
    if name not in _BINARY:
        data.div_(255.0)
    targets = None if y is None else torch.from_numpy(np.array(y, dtype=np.int64))

    generator = torch.Generator().manual_seed(int(seed))
    if binarize == "threshold":
        data = (data > 0.5).to(data.dtype)
    elif binarize == "dynamic":
        data = dynamic_binarize(data, generator=generator)
    if noise_std > 0:
        data = add_gaussian_noise(data, float(noise_std), generator=generator)

    if name == "mnist":
        classes = tuple(str(k) for k in range(10))
    elif name == "caltech101":
        classes = _readers.caltech_classnames(root.resolve())
    else:
        classes = None
    return Dataset(
        name=name,
        split=split,
        data=data,
        targets=targets,
        image_shape=_IMAGE_SHAPES[name],
        classes=classes,
        binarize=binarize,
        noise_std=float(noise_std),
        seed=int(seed),
    )
