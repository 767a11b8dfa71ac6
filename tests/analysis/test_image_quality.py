"""Image quality: per-image MSE and PSNR."""

import pytest
import torch

from pyro_noisevae.analysis import mse, psnr


def test_mse_and_psnr_known_values():
    target = torch.rand(4, 784, dtype=torch.float64)
    est = target + 0.1
    torch.testing.assert_close(mse(est, target), torch.full((4,), 0.01, dtype=torch.float64))
    torch.testing.assert_close(psnr(est, target), torch.full((4,), 20.0, dtype=torch.float64))
    torch.testing.assert_close(psnr(est, target, data_range=10.0), torch.full((4,), 40.0, dtype=torch.float64))
    assert torch.isinf(psnr(target, target)).all()
    with pytest.raises(ValueError, match="same shape"):
        mse(est[:, :10], target)
    with pytest.raises(ValueError, match="data_range"):
        psnr(est, target, data_range=0)
