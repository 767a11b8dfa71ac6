"""Readers of the raw dataset files under a data root, with validation and an in-process cache."""

import functools
import os
from pathlib import Path

import numpy as np

__all__ = []  # private module: used by ``datasets.py`` only

#: file locations relative to the data root (the layout of ``shared/data``)
MNIST_RAW = Path("MNIST") / "raw"
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
BINARIZED_MNIST_FILES = {s: Path("binarized_mnist") / f"binarized_mnist_{s}.mat" for s in ("train", "valid", "test")}
FREY_FILE = Path("frey_face") / "frey_rawface.mat"
CALTECH_FILE = Path("caltech101_silhouettes") / "caltech101_silhouettes_28_split1.mat"

#: official sizes; a file of another size is treated as corrupt
MNIST_SIZES = {"train": 60000, "test": 10000}
BINARIZED_MNIST_SIZES = {"train": 50000, "valid": 10000, "test": 10000}
FREY_SIZE = 1965
CALTECH_SIZES = {"train": 4100, "valid": 2264, "test": 2307}
CALTECH_KEYS = {"train": "train", "valid": "val", "test": "test"}


def required_files(name, root):
    """The files (absolute paths) that dataset ``name`` needs under ``root``."""
    if name == "mnist":
        return [root / MNIST_RAW / f for pair in MNIST_FILES.values() for f in pair]
    if name == "binarized-mnist":
        return [root / p for p in BINARIZED_MNIST_FILES.values()]
    if name == "frey-face":
        return [root / FREY_FILE]
    if name == "caltech101":
        return [root / CALTECH_FILE]
    raise AssertionError(name)


def _part_files(name, part, root):
    if name == "mnist":
        return [root / MNIST_RAW / f for f in MNIST_FILES[part]]
    if name == "binarized-mnist":
        return [root / BINARIZED_MNIST_FILES[part]]
    return required_files(name, root)


def read_part(name, part, root):
    """
    Read one official part of dataset ``name`` from ``root`` (its files must exist).

    Parts: MNIST ``train`` (60,000) / ``test``; binarized MNIST and Caltech ``train`` / ``valid`` / ``test``;
    Frey Face ``all``. Returns ``(images, labels)``: read-only ``uint8`` images of shape ``(N, H * W)``
    (row-major flattened) and read-only ``int64`` labels of shape ``(N,)``, or ``None``. The result is
    cached per dataset, part, root and file size/modification time.
    """
    signature = tuple((str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in _part_files(name, part, root))
    return _read_cached(name, part, str(root), signature)


def clear_cache():
    """Forget every cached array (the next load reads the files again)."""
    _read_cached.cache_clear()
    _caltech_classnames.cache_clear()


@functools.lru_cache(maxsize=16)
def _read_cached(name, part, root, signature):
    images, labels = _READERS[name](Path(root), part)
    images.flags.writeable = False
    if labels is not None:
        labels.flags.writeable = False
    return images, labels


def _corrupt(path, problem):
    return ValueError(
        f"{path}: {problem}. The file is corrupt or is not the expected dataset file; "
        "replace it with an intact copy (see the data README for sizes and checksums)"
    )


def _loadmat(path, keys):
    import scipy.io

    try:
        contents = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises many types (ValueError, TypeError, NotImplementedError for v7.3 ...)
        raise _corrupt(path, f"could not be read as a MATLAB 5 .mat file ({type(e).__name__}: {e})") from e
    missing = [k for k in keys if k not in contents]
    if missing:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise _corrupt(path, f"has no variable(s) {missing} (found {found})")
    return contents


def _as_uint8(path, key, array, shape, binary):
    """Check the shape and value range of ``array`` and return it as a C-contiguous uint8 array."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise _corrupt(path, f"variable {key!r} is not a numeric array")
    if array.shape != shape:
        raise _corrupt(path, f"variable {key!r} has shape {array.shape}, expected {shape}")
    high = 1 if binary else 255
    if array.dtype != np.uint8 or binary:
        ok = np.isfinite(array).all() and (array >= 0).all() and (array <= high).all()
        ok = ok and (array == np.round(array)).all()
        if not ok:
            kind = "{0, 1}" if binary else "integers 0..255"
            raise _corrupt(path, f"variable {key!r} must hold {kind}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def _labels(path, key, array, n, low, high):
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf" or array.size != n:
        raise _corrupt(path, f"labels {key!r} must be a numeric array of {n} entries")
    labels = array.reshape(-1)
    if not ((labels >= low).all() and (labels <= high).all() and (labels == np.round(labels)).all()):
        raise _corrupt(path, f"labels {key!r} must be integers in {low}..{high}")
    return labels.astype(np.int64)


def _read_mnist(root, part):
    from torchvision.datasets import MNIST  # lazy: torchvision is slow to import

    image_file, label_file = (root / MNIST_RAW / f for f in MNIST_FILES[part])
    try:
        ds = MNIST(str(root), train=(part == "train"), download=False)
        images, labels = ds.data.numpy(), ds.targets.numpy()
    except Exception as e:  # torchvision signals bad IDX headers with assertions or RuntimeErrors
        raise _corrupt(
            f"{image_file} / {label_file}", f"torchvision could not read the IDX files ({type(e).__name__}: {e})"
        ) from e
    n = MNIST_SIZES[part]
    images = _as_uint8(image_file, "images", images, (n, 28, 28), binary=False).reshape(n, 784)
    return images, _labels(label_file, "labels", labels, n, 0, 9)


def _read_binarized_mnist(root, part):
    path = root / BINARIZED_MNIST_FILES[part]
    x = _loadmat(path, ["X"])["X"]
    return _as_uint8(path, "X", x, (BINARIZED_MNIST_SIZES[part], 784), binary=True), None


def _read_frey(root, part):
    path = root / FREY_FILE
    ff = _loadmat(path, ["ff"])["ff"]
    # one 28x20 image per column, each column row-major: ff.T.reshape(-1, 28, 20) gives upright faces
    ff = _as_uint8(path, "ff", ff, (560, FREY_SIZE), binary=False)
    return np.ascontiguousarray(ff.T), None


def _read_caltech(root, part):
    path = root / CALTECH_FILE
    key, n = CALTECH_KEYS[part], CALTECH_SIZES[part]
    contents = _loadmat(path, [f"{key}_data", f"{key}_labels"])
    x = _as_uint8(path, f"{key}_data", contents[f"{key}_data"], (n, 784), binary=True)
    # rows are column-major (MATLAB) 28x28 images: transpose each to row-major
    x = np.ascontiguousarray(x.reshape(n, 28, 28).transpose(0, 2, 1).reshape(n, 784))
    return x, _labels(path, f"{key}_labels", contents[f"{key}_labels"], n, 1, 101) - 1


def caltech_classnames(root):
    """The 101 Caltech class names (index ``k`` is label ``k``), or ``None`` if the file lacks them."""
    return _caltech_classnames(str(root / CALTECH_FILE))


@functools.lru_cache(maxsize=2)
def _caltech_classnames(path):
    import scipy.io

    try:
        names = scipy.io.loadmat(path, variable_names=["classnames"]).get("classnames")
        names = tuple(str(np.asarray(c).reshape(-1)[0]) for c in np.asarray(names).reshape(-1))
    except Exception:  # the names are a convenience; a file without them is still usable
        return None
    return names if len(names) == 101 else None


_READERS = {
    "mnist": _read_mnist,
    "binarized-mnist": _read_binarized_mnist,
    "frey-face": _read_frey,
    "caltech101": _read_caltech,
}
