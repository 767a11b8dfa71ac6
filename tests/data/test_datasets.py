"""Tests of the offline dataset loaders, run against the real shared data (see shared/data/README.md)."""

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from pyro_noisevae.data import DATASETS, ENV_VAR, SPLITS, Dataset, clear_cache, load_dataset
from pyro_noisevae.data import data_root as resolve_data_root
from pyro_noisevae.data import _readers
from pyro_noisevae.data.datasets import _frey_indices

# sizes and image shapes stated in shared/data/README.md (MNIST train/valid is our 50k/10k cut of the 60k)
SIZES = {
    "mnist": {"train": 50000, "valid": 10000, "test": 10000, "trainval": 60000},
    "binarized-mnist": {"train": 50000, "valid": 10000, "test": 10000, "trainval": 60000},
    "frey-face": {"train": 1565, "valid": 200, "test": 200, "trainval": 1765},
    "caltech101": {"train": 4100, "valid": 2264, "test": 2307, "trainval": 6364},
}
SHAPES = {"mnist": (28, 28), "binarized-mnist": (28, 28), "frey-face": (28, 20), "caltech101": (28, 28)}
NUM_CLASSES = {"mnist": 10, "caltech101": 101}
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _row_set(x):
    """The rows of a (N, D) tensor of pixel values k/255 as a set of byte strings (exact)."""
    return {r.tobytes() for r in x.mul(255).round_().to(torch.uint8).numpy()}


# ---------------------------------------------------------------------------------------------- every split


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", DATASETS)
def test_split_sizes_dtypes_ranges(data_root, name, split):
    ds = load_dataset(name, split, root=data_root)
    n, (h, w) = SIZES[name][split], SHAPES[name]
    assert isinstance(ds, Dataset) and (ds.name, ds.split) == (name, split)
    assert len(ds) == n
    assert ds.image_shape == (h, w)
    assert ds.data.shape == (n, h * w) and ds.data.dtype == torch.float32
    assert ds.images.shape == (n, h, w)
    assert ds.data.min() >= 0 and ds.data.max() <= 1
    if name in ("binarized-mnist", "caltech101"):
        assert ((ds.data == 0) | (ds.data == 1)).all()
    if name in NUM_CLASSES:
        assert ds.targets.shape == (n,) and ds.targets.dtype == torch.long
        assert 0 <= ds.targets.min() and ds.targets.max() < NUM_CLASSES[name]
        assert len(ds.classes) == NUM_CLASSES[name]
    else:
        assert ds.targets is None and ds.classes is None


@pytest.mark.parametrize("name", DATASETS)
def test_trainval_is_train_then_valid(data_root, name):
    train, valid, trainval = (load_dataset(name, s, root=data_root) for s in ("train", "valid", "trainval"))
    assert torch.equal(trainval.data, torch.cat([train.data, valid.data]))
    if train.targets is not None:
        assert torch.equal(trainval.targets, torch.cat([train.targets, valid.targets]))


def test_root_defaults_to_environment(data_root, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(data_root))
    assert torch.equal(load_dataset("frey-face", "test").data, load_dataset("frey-face", "test", root=data_root).data)


# -------------------------------------------------------------------------------------------------- MNIST


def test_mnist_class_counts(data_root):
    test = load_dataset("mnist", "test", root=data_root)
    assert torch.bincount(test.targets).tolist() == MNIST_TEST_COUNTS
    train, valid = load_dataset("mnist", "train", root=data_root), load_dataset("mnist", "valid", root=data_root)
    counts = torch.bincount(train.targets, minlength=10) + torch.bincount(valid.targets, minlength=10)
    assert counts.tolist() == MNIST_TRAIN_COUNTS


def test_mnist_valid_is_last_10000_of_official_train(data_root):
    # read the IDX files directly (16/8-byte headers), independently of torchvision
    raw = data_root / "MNIST" / "raw"
    images = np.fromfile(raw / "train-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(60000, 784)
    labels = np.fromfile(raw / "train-labels-idx1-ubyte", dtype=np.uint8, offset=8)
    valid = load_dataset("mnist", "valid", root=data_root)
    assert torch.equal(valid.data, torch.from_numpy(images[50000:].astype(np.float32) / 255))
    assert valid.targets.tolist() == labels[50000:].tolist()
    test_images = np.fromfile(raw / "t10k-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(10000, 784)
    test = load_dataset("mnist", "test", root=data_root)
    assert torch.equal(test.data, torch.from_numpy(test_images.astype(np.float32) / 255))


def test_mnist_train_valid_disjoint(data_root):
    # MNIST's 60,000 training images are pairwise distinct, so no image may be in both splits
    train, valid = load_dataset("mnist", "train", root=data_root), load_dataset("mnist", "valid", root=data_root)
    train_rows, valid_rows = _row_set(train.data), _row_set(valid.data)
    assert len(train_rows) == 50000 and len(valid_rows) == 10000
    assert not train_rows & valid_rows


# --------------------------------------------------------------------------------------- binarized MNIST


@pytest.mark.parametrize("split,mean", [("train", 0.1306), ("valid", 0.1311), ("test", 0.1325)])
def test_binarized_mnist_pixel_means(data_root, split, mean):
    # the README rounds to 4 decimals: the exact mean is within half a unit (5e-5) of it; the mean of
    # ~1e7 zeros and ones is computed exactly in float64
    ds = load_dataset("binarized-mnist", split, root=data_root)
    assert abs(ds.data.double().mean().item() - mean) <= 5e-5


def test_binarized_mnist_test_is_a_bernoulli_draw_of_sorted_mnist_test(data_root):
    # README: the test set is the MNIST test set stably sorted by label, binarized by Bernoulli(x).
    # This pins the pixel orientation: with transposed images, ones would land on zero-intensity pixels.
    mnist = load_dataset("mnist", "test", root=data_root)
    order = torch.from_numpy(np.argsort(mnist.targets.numpy(), kind="stable"))
    probs = mnist.data[order].double()
    binary = load_dataset("binarized-mnist", "test", root=data_root).data.double()
    assert (binary * (probs == 0)).sum() == 0
    expected, sd = probs.sum(), (probs * (1 - probs)).sum().sqrt()
    assert abs(binary.sum() - expected) <= 4 * sd  # 4 standard deviations of a sum of Bernoullis


# ------------------------------------------------------------------------------------------------- Frey


def test_frey_face_split_is_the_documented_permutation(data_root):
    ff = scipy.io.loadmat(data_root / "frey_face" / "frey_rawface.mat")["ff"]  # (560, 1965), one face per column
    position = {col.tobytes(): j for j, col in enumerate(ff.T)}
    assert len(position) == 1965  # all faces distinct, so a row identifies its index
    perm = np.random.RandomState(0).permutation(1965)
    found = {}
    for split, (lo, hi) in {"train": (0, 1565), "valid": (1565, 1765), "test": (1765, 1965)}.items():
        ds = load_dataset("frey-face", split, root=data_root)
        found[split] = [position[r.tobytes()] for r in (ds.data * 255).round().to(torch.uint8).numpy()]
        assert found[split] == perm[lo:hi].tolist() == _frey_indices(split).tolist()
        # README recipe: ff.T.reshape(-1, 28, 20) gives upright 28x20 faces
        assert torch.equal(ds.images[0], torch.from_numpy(ff.T.reshape(-1, 28, 20)[perm[lo]].astype(np.float32) / 255))
    everything = found["train"] + found["valid"] + found["test"]
    assert sorted(everything) == list(range(1965))  # disjoint and complete


def test_frey_face_intensity_range_and_seed_independence(data_root):
    splits = [load_dataset("frey-face", s, root=data_root, seed=0) for s in ("trainval", "test")]
    pixels = torch.cat([d.data for d in splits])
    assert pixels.shape == (1965, 560)
    # README: uint8 values 8..238
    assert (pixels.min() * 255).round() == 8 and (pixels.max() * 255).round() == 238
    assert torch.equal(load_dataset("frey-face", "test", root=data_root, seed=123).data, splits[1].data)


# ---------------------------------------------------------------------------------------------- Caltech


@pytest.mark.parametrize("split,key", [("train", "train"), ("valid", "val"), ("test", "test")])
def test_caltech_matches_column_major_recipe(data_root, split, key):
    mat = scipy.io.loadmat(data_root / "caltech101_silhouettes" / "caltech101_silhouettes_28_split1.mat")
    images = mat[f"{key}_data"].reshape((-1, 28, 28), order="F")
    ds = load_dataset("caltech101", split, root=data_root)
    assert torch.equal(ds.images, torch.from_numpy(images.astype(np.float32)))
    assert ds.targets.tolist() == (mat[f"{key}_labels"].ravel().astype(np.int64) - 1).tolist()


def test_caltech_classes(data_root):
    train = load_dataset("caltech101", "train", root=data_root)
    assert torch.unique(train.targets).tolist() == list(range(101))
    assert train.classes[0] == "Airplanes Side 2" and len(set(train.classes)) == 101


# ------------------------------------------------------------------------------------ binarize and noise


def test_threshold_binarization(data_root):
    x = load_dataset("mnist", "test", root=data_root).data
    b = load_dataset("mnist", "test", root=data_root, binarize="threshold")
    assert b.binarize == "threshold"
    assert torch.equal(b.data, (x > 0.5).float())
    assert 0 < b.data.mean() < 1


def test_dynamic_binarization_mean_and_seed(data_root):
    x = load_dataset("mnist", "test", root=data_root).data.double()
    b = load_dataset("mnist", "test", root=data_root, binarize="dynamic", seed=1).data
    assert ((b == 0) | (b == 1)).all()
    # E[mean(b)] = mean(x); sd(mean(b)) = sqrt(sum x(1-x)) / n for independent Bernoullis
    se = (x * (1 - x)).sum().sqrt() / x.numel()
    assert abs(b.double().mean() - x.mean()) <= 4 * se
    assert (b[x == 0] == 0).all() and (b[x == 1] == 1).all()
    assert torch.equal(b, load_dataset("mnist", "test", root=data_root, binarize="dynamic", seed=1).data)
    assert not torch.equal(b, load_dataset("mnist", "test", root=data_root, binarize="dynamic", seed=2).data)


@pytest.mark.parametrize("binarize", ["threshold", "dynamic"])
def test_binarization_is_a_no_op_on_binary_data(data_root, binarize):
    for name in ("binarized-mnist", "caltech101"):
        plain = load_dataset(name, "valid", root=data_root)
        assert torch.equal(load_dataset(name, "valid", root=data_root, binarize=binarize).data, plain.data)


def test_noise_injection_moments(data_root):
    x = load_dataset("frey-face", "test", root=data_root).data.double()
    s = 0.1
    y = load_dataset("frey-face", "test", root=data_root, noise_std=s, seed=3)
    assert y.noise_std == s and y.data.dtype == torch.float32 and y.data.shape == x.shape
    eps = y.data.double() - x
    n = eps.numel()
    assert abs(eps.mean()) <= 4 * s / math.sqrt(n)  # se of the mean of n N(0, s^2) draws
    assert abs(eps.std() - s) <= 4 * s / math.sqrt(2 * n)  # asymptotic se of the sample sd
    assert y.data.min() < 0 or y.data.max() > 1  # unclipped: Y = X + N(0, s^2) leaves [0, 1]
    assert torch.equal(y.data, load_dataset("frey-face", "test", root=data_root, noise_std=s, seed=3).data)


def test_binarize_then_noise(data_root):
    b = load_dataset("caltech101", "test", root=data_root)
    y = load_dataset("caltech101", "test", root=data_root, binarize="dynamic", noise_std=0.5, seed=0)
    eps = (y.data - b.data).double()
    assert abs(eps.std() - 0.5) <= 4 * 0.5 / math.sqrt(2 * eps.numel())


def test_returned_tensors_are_private_copies(data_root):
    first = load_dataset("mnist", "valid", root=data_root)
    expected_data, expected_targets = first.data.clone(), first.targets.clone()
    first.data.fill_(7.0)
    first.targets.fill_(3)
    again = load_dataset("mnist", "valid", root=data_root)
    assert torch.equal(again.data, expected_data) and torch.equal(again.targets, expected_targets)
    images, labels = _readers.read_part("mnist", "train", data_root.resolve())
    assert not images.flags.writeable and not labels.flags.writeable  # the cache itself cannot be written through
    clear_cache()
    assert torch.equal(load_dataset("mnist", "valid", root=data_root).data, expected_data)


# ----------------------------------------------------------------------------------------------- errors


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.setenv(ENV_VAR, "")  # empty counts as unset
    assert resolve_data_root() == resolve_data_root("data")
    monkeypatch.delenv(ENV_VAR)
    assert resolve_data_root() == resolve_data_root("./data")
    assert resolve_data_root("~/x") == Path("~/x").expanduser() != Path("~/x")
    with pytest.raises(TypeError, match="root"):
        resolve_data_root(3)


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"name": "omniglot"}, DATASETS),
        ({"name": "mnist", "split": "validation"}, SPLITS),
        ({"name": "mnist", "binarize": "stochastic"}, ("'threshold'", "'dynamic'")),
    ],
)
def test_unknown_choices_list_valid_ones(data_root, kwargs, words):
    with pytest.raises(ValueError) as info:
        load_dataset(root=data_root, **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "noise_std,error", [(-0.1, ValueError), (math.nan, ValueError), (math.inf, ValueError), ("0.1", TypeError)]
)
def test_bad_noise_std(data_root, noise_std, error):
    with pytest.raises(error, match="noise_std"):
        load_dataset("frey-face", root=data_root, noise_std=noise_std)


def test_bad_seed(data_root):
    with pytest.raises(TypeError, match="seed"):
        load_dataset("frey-face", root=data_root, seed=1.5)


@pytest.mark.parametrize("name", DATASETS)
def test_missing_dataset_message(tmp_path, name):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, root=root)
    message = str(info.value)
    for path in _readers.required_files(name, root):
        assert str(path) in message
    assert f"Data root in use: {root} (given as the root argument)" in message and "root argument" in message
    assert "--data-root" in message and ENV_VAR in message
    assert ("download=True" in message) == (name == "mnist")


def test_missing_message_says_how_root_was_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    with pytest.raises(FileNotFoundError, match=f"from the {ENV_VAR} environment variable") as info:
        load_dataset("caltech101")
    expected = tmp_path / "from-env" / "caltech101_silhouettes" / "caltech101_silhouettes_28_split1.mat"
    assert str(expected) in str(info.value)
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="default ./data") as info:
        load_dataset("frey-face")
    assert str(tmp_path / "data" / "frey_face" / "frey_rawface.mat") in str(info.value)


def test_missing_mnist_with_archives_suggests_offline_extraction(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for files in _readers.MNIST_FILES.values():
        for f in files:
            (raw / f"{f}.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="without going online"):
        load_dataset("mnist", root=tmp_path)


def _savemat(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, arrays)


def test_corrupt_mat_missing_key(tmp_path):
    for rel in _readers.BINARIZED_MNIST_FILES.values():
        _savemat(tmp_path / rel, Y=np.zeros((3, 784), dtype=np.uint8))
    with pytest.raises(ValueError, match="binarized_mnist_train.mat: has no variable") as info:
        load_dataset("binarized-mnist", root=tmp_path)
    assert str(tmp_path / "binarized_mnist" / "binarized_mnist_train.mat") in str(info.value)


def test_corrupt_mat_wrong_shape(tmp_path):
    _savemat(tmp_path / _readers.FREY_FILE, ff=np.zeros((560, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"frey_rawface.mat: variable 'ff' has shape \(560, 10\)"):
        load_dataset("frey-face", root=tmp_path)


def test_corrupt_mat_not_binary(tmp_path):
    for rel in _readers.BINARIZED_MNIST_FILES.values():
        _savemat(tmp_path / rel, X=np.full((_readers.BINARIZED_MNIST_SIZES[rel.stem.split("_")[-1]], 784), 2, np.uint8))
    with pytest.raises(ValueError, match=r"binarized_mnist_test.mat: variable 'X' must hold \{0, 1\}"):
        load_dataset("binarized-mnist", "test", root=tmp_path)


def test_not_a_mat_file(tmp_path):
    path = tmp_path / _readers.CALTECH_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>not a MATLAB file</html>")
    with pytest.raises(ValueError, match="could not be read as a MATLAB") as info:
        load_dataset("caltech101", root=tmp_path)
    assert str(path) in str(info.value)


def _write_idx(path, array):
    code = {1: 0x801, 3: 0x803}[array.ndim]
    header = np.array([code, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_corrupt_mnist_idx(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix in ("train", "t10k"):  # well-formed IDX files, but 5 images instead of 60,000 / 10,000
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", np.zeros((5, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: variable 'images' has shape \(5, 28, 28\)"):
        load_dataset("mnist", root=tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"garbage, not an IDX file")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.*torchvision could not read"):
        load_dataset("mnist", "test", root=tmp_path)


def test_dataset_validates_its_fields():
    with pytest.raises(ValueError, match="image_shape"):
        Dataset("toy", "train", torch.zeros(4, 6), None, (2, 2))
    with pytest.raises(ValueError, match="targets"):
        Dataset("toy", "train", torch.zeros(4, 6), torch.zeros(3, dtype=torch.long), (2, 3))
    ds = Dataset("toy", "train", torch.zeros(4, 6), None, (2, 3))
    assert len(ds) == 4 and ds.images.shape == (4, 2, 3) and "n=4" in repr(ds)
