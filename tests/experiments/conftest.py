"""A tiny DVAE table trained once, shared by the table and ``evaluate`` tests (they evaluate its runs)."""

import pytest

from pyro_noisevae.cli import main as cli_main

TINY_TRAIN = ["--train-size", "100", "--epochs", "1", "--batch-size", "50", "--hidden", "8", "--z-dim", "2"]
TINY_EVAL = ["--test-size", "20", "--num-samples", "10", "--bound-repeats", "2"]


@pytest.fixture(scope="session")
def dvae_table(tmp_path_factory):
    """``(root, argv)``: ``reproduce-dvae-table`` run into ``root/out`` with its models in ``root/runs``."""
    root = tmp_path_factory.mktemp("dvae")
    argv = ["reproduce-dvae-table", "--out", str(root / "out"), "--runs", str(root / "runs"), "--noise-levels", "10",
            "--layers", "1", "--models", "dvae-k1", "diwae-k5", "--no-progress", *TINY_TRAIN, *TINY_EVAL]
    assert cli_main(argv) == 0
    return root, argv
