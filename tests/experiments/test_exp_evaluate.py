"""The ``evaluate`` command on a run folder, and the evaluation budget."""

import json

import pytest

from pyro_noisevae.cli import main as cli_main
from pyro_noisevae.experiments.evaluate import EvalBudget


def test_evaluate_run_folder(dvae_table, tmp_path):
    root, _ = dvae_table
    run = sorted((root / "runs").glob("dvae-k1-h1-sp10-*"))[0]
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(run), "--test-size", "12", "--num-samples", "20", "--iw-svi", "--gaps", "--iw-svi-size", "4",
            "--iw-svi-steps", "2", "--iw-svi-particles", "3", "--iw-svi-samples", "20", "--out", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    rec = json.loads(out.read_text())
    r = rec["results"]
    assert rec["dataset"] == "binarized-mnist" and rec["split"] == "test"
    assert r["num_images"] == 12 and r["iw_svi_images"] == 4 and r["gaps"]["num_images"] == 4
    assert r["log_px"] > r["elbo"]  # IWAE-20 above the ELBO estimate from the same samples (always, by Jensen)
    assert {"inference_gap", "approximation_gap", "amortization_gap"} <= set(r["gaps"])
    assert cli_main(["evaluate", str(tmp_path / "missing")]) == 2


def test_eval_budget_errors():
    with pytest.raises(ValueError, match="num_samples"):
        EvalBudget(num_samples=0)
    with pytest.raises(ValueError, match="test_size"):
        EvalBudget(test_size=1)
    with pytest.raises(ValueError, match="valid_size"):
        EvalBudget(valid_size=0)
    assert EvalBudget(valid_size=None).valid_size is None
