"""Every training variant of the denoising / IWAE / AIR issue builds and takes a few steps from a config."""

import math

import pytest
import torch

from pyro_noisevae.data import load_dataset
from pyro_noisevae.guides import DenoisingGuide
from pyro_noisevae.infer import IWAE_ELBO
from pyro_noisevae.nn import GRUEncoder, WNIEncoder
from pyro_noisevae.training import TrainConfig, Trainer, build_model, build_programs

VARIANTS = {
    "vae": {},
    "dvae": {"corruption": "salt-and-pepper", "corruption_level": 0.1, "num_corruptions": 2},
    "diwae": {"objective": "iwae", "num_particles": 5, "corruption": "salt-and-pepper", "corruption_level": 0.1},
    "diwae-dreg-partial": {
        "objective": "iwae",
        "num_particles": 3,
        "gradient_estimator": "dreg",
        "corruption": "gaussian",
        "corruption_level": 0.2,
        "num_corruptions": 2,
        "partial_alpha": 0.5,
    },
    "wni-vae": {"encoder": "wni", "wni_bound": 2.0},
    "wni-iwae": {"encoder": "wni", "wni_bound": 2.0, "objective": "iwae", "num_particles": 5},
    "gru-dvae": {"encoder": "gru", "corruption": "salt-and-pepper", "corruption_level": 0.1},
    "meanfield-dvae-beta": {"objective": "meanfield", "beta": 2.0, "corruption": "gaussian", "corruption_level": 0.1},
}


@pytest.fixture(scope="module")
def small_mnist(data_root):
    ds = load_dataset("binarized-mnist", split="test", root=data_root)
    rows = torch.randperm(len(ds.data), generator=torch.Generator().manual_seed(0))[:64]  # the split is sorted by label
    return ds.data[rows], tuple(ds.image_shape)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_builds_and_trains(name, small_mnist):
    data, image_shape = small_mnist
    cfg = TrainConfig(
        dataset="binarized-mnist", likelihood="bernoulli", z_dim=4, hidden_dims=(16,), batch_size=16, lr=1e-2,
        max_steps=3, **VARIANTS[name]
    )
    vae = build_model(cfg, data.shape[1], image_shape)
    model, guide, elbo = build_programs(vae, cfg)
    opts = VARIANTS[name]
    if opts.get("encoder") == "wni":
        assert isinstance(vae.encoder, WNIEncoder)
    if opts.get("encoder") == "gru":
        assert isinstance(vae.encoder, GRUEncoder) and vae.encoder.image_shape == image_shape
    if opts.get("objective") == "iwae":
        assert isinstance(elbo, IWAE_ELBO) and elbo.gradient_estimator == opts.get("gradient_estimator", "standard")
    if opts.get("corruption") and cfg.beta == 1.0:
        assert isinstance(guide, DenoisingGuide) and guide.num_corruptions == opts.get("num_corruptions", 1)
        assert guide.alpha == opts.get("partial_alpha", 1.0)
    trainer = Trainer(vae, model, guide, elbo, data, batch_size=cfg.batch_size, lr=cfg.lr, max_steps=cfg.max_steps)
    before = {k: v.detach().clone() for k, v in vae.state_dict().items()}
    loss = trainer.run_epoch(progress=False)
    assert math.isfinite(loss)
    after = vae.state_dict()
    for part in ("encoder", "decoder"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part)), part


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"encoder": "wni"}, "wni-bound"),
        ({"corruption": "gaussian", "corruption_level": 0.0}, "sigma must be > 0"),
        ({"gradient_estimator": "dreg"}, "for objective .iwae. only"),
        ({"num_corruptions": 3}, "need a corruption"),
    ],
)
def test_bad_variant_configs_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):  # refused by the config, before any model or data exists
        TrainConfig(likelihood="bernoulli", z_dim=2, hidden_dims=(4,), **kw)


def test_gru_needs_the_image_shape():
    cfg = TrainConfig(likelihood="bernoulli", z_dim=2, hidden_dims=(4,), encoder="gru")
    with pytest.raises(ValueError, match="image_shape"):
        build_model(cfg, 16, (3, 5))
