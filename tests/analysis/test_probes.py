"""Probes of a representation: the linear probe and k-NN accuracy."""

import pytest
import torch

from pyro_noisevae.analysis import fit_linear_probe, knn_accuracy


def _blobs(n_per_class, centres, spread, seed):
    gen = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(centres, dtype=torch.float64)
    labels = torch.arange(c.shape[0]).repeat_interleave(n_per_class)
    feats = c[labels] + spread * torch.randn(labels.numel(), c.shape[1], generator=gen, dtype=torch.float64)
    return feats, labels


def test_linear_probe_separates_separable_data():
    centres = [[6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 6.0], [-6.0, -6.0, -6.0]]
    train_f, train_y = _blobs(100, centres, 0.5, seed=0)
    test_f, test_y = _blobs(50, centres, 0.5, seed=1)
    probe = fit_linear_probe(train_f, train_y)
    # the closest pair of centres is 6√2 apart, i.e. > 8 standard deviations: errors have probability < 1e-15
    assert probe.accuracy(train_f, train_y) == 1.0
    assert probe.accuracy(test_f, test_y) == 1.0
    assert probe.predict(test_f).dtype == torch.long and probe(test_f).shape == (200, 4)


def test_linear_probe_is_the_regularized_optimum():
    f, y = _blobs(60, [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], 1.0, seed=2)
    l2 = 1e-2
    probe = fit_linear_probe(f, y, l2=l2, standardize=True)
    w = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    ft = (f - probe.shift) / probe.scale
    loss = torch.nn.functional.cross_entropy(ft @ w.T + b, y) + 0.5 * l2 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-6 and gb.abs().max() < 1e-6  # stationary point of a strictly convex objective
    torch.testing.assert_close(probe.shift, f.mean(0))


def test_linear_probe_errors():
    f, y = _blobs(5, [[0.0], [1.0]], 0.1, seed=0)
    with pytest.raises(TypeError, match="long"):
        fit_linear_probe(f, y.float())
    with pytest.raises(ValueError, match="labels must have shape"):
        fit_linear_probe(f, y[:-1])
    with pytest.raises(ValueError, match="l2"):
        fit_linear_probe(f, y, l2=0.0)
    with pytest.raises(ValueError, match="num_classes"):
        fit_linear_probe(f, y, num_classes=1)
    probe = fit_linear_probe(f, y)
    with pytest.raises(ValueError, match="columns"):
        probe(torch.zeros(3, 2, dtype=torch.float64))


def test_knn_accuracy():
    train_f = torch.tensor([[0.0], [0.1], [0.2], [1.0], [1.1], [1.2]])
    train_y = torch.tensor([0, 0, 0, 1, 1, 1])
    test_f = torch.tensor([[0.05], [1.05], [0.45], [0.7]])
    test_y = torch.tensor([0, 1, 1, 1])  # 0.45 is closer to class 0, 0.7 closer to class 1
    assert knn_accuracy(train_f, train_y, test_f, test_y, k=1) == 0.75
    assert knn_accuracy(train_f, train_y, test_f, test_y, k=3, chunk_size=1) == 0.75
    assert knn_accuracy(train_f, train_y, train_f, train_y, k=1) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(train_f, train_y, test_f, test_y, k=7)
    with pytest.raises(ValueError, match="same number of columns"):
        knn_accuracy(train_f, train_y, torch.zeros(4, 2), test_y)
