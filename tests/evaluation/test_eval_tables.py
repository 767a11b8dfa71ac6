"""The evaluation subcommands end to end at a tiny budget: evaluate, reproduce-dvae-table, reproduce-air-table."""

import json
import math

import pytest

from pyro_noisevae.cli import main as cli_main
from pyro_noisevae.experiments.evaluation_tables import (
    DVAE_REFERENCES,
    EvalBudget,
    TrainBudget,
    reproduce_air_table,
)

TINY_TRAIN = ["--train-size", "100", "--epochs", "1", "--batch-size", "50", "--hidden", "8", "--z-dim", "2"]
TINY_EVAL = ["--test-size", "20", "--num-samples", "10", "--bound-repeats", "2"]


@pytest.fixture(scope="module")
def dvae_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvae")
    argv = ["reproduce-dvae-table", "--out", str(root / "out"), "--runs", str(root / "runs"), "--noise-levels", "10",
            "--layers", "1", "--models", "dvae-k1", "diwae-k5", "--no-progress", *TINY_TRAIN, *TINY_EVAL]
    assert cli_main(argv) == 0
    return root, argv


def test_dvae_table_outputs(dvae_table):
    root, argv = dvae_table
    record = json.loads((root / "out" / "dvae_table1.json").read_text())
    assert len(record["rows"]) == 2
    by = {(r["model"], r["noise"]): r for r in record["rows"]}
    for (model, noise), r in by.items():
        assert math.isfinite(r["neg_bound"]) and r["neg_bound"] > 0
        assert r["reference"] == DVAE_REFERENCES[(model, 1)][int(noise)][0]
    # DVAE reports -ELBO, DIWAE the -IWAE-5 bound it was trained on
    assert by[("dvae-k1", 10)]["neg_bound"] == -by[("dvae-k1", 10)]["elbo"]
    assert by[("diwae-k5", 10)]["bound_k"] == 5 and by[("diwae-k5", 10)]["neg_bound"] == -by[("diwae-k5", 10)]["bound"]
    assert record["command"].startswith("pyro-noisevae")
    md = (root / "out" / "dvae_table1.md").read_text()
    assert "| DIWAE (K=5) | 1 |" in md and "/ 93.97" in md
    assert (root / "out" / "dvae_table1.png").stat().st_size > 0


def test_dvae_table_rerun_reuses_models(dvae_table):
    root, argv = dvae_table
    checkpoints = {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/checkpoint.pt")}
    assert len(checkpoints) == 2
    assert cli_main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/checkpoint.pt")} == checkpoints


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


def test_air_table(tmp_path):
    tb = TrainBudget(epochs=1, train_size=100, batch_size=50, hidden=8, z_dim=2)
    eb = EvalBudget(test_size=16, num_samples=10, bound_repeats=2, iw_svi_size=4, iw_svi_steps=2, iw_svi_particles=3,
                    iw_svi_samples=10, valid_size=16, valid_samples=10)
    record = reproduce_air_table(out=tmp_path / "out", runs_dir=tmp_path / "runs", sigmas=(0.2, 0.5), bounds=(2.0,),
                                 iwae_k=2, reference_k=3, train_budget=tb, eval_budget=eb, progress=False, command="test")
    models = record["models"]
    assert len(models) == 1 + 2 + 1 + 1 + 2 + 1 + 1  # vae, dvae x2, wni-vae, iwae, diwae x2, wni-iwae, reference
    # the kept DVAE strength is the best on validation
    dvae = [m for m in models if m["family"] == "dvae"]
    best = max(dvae, key=lambda m: m["valid"]["log_px"])
    assert record["selected"]["dvae"] == best["run"].rsplit("/", 1)[-1]
    tested = [m for m in models if "test" in m]
    assert len(tested) == 6 + 1  # one per family plus the reference IWAE
    for m in tested:
        t = m["test"]
        assert math.isfinite(t["log_px_iw_svi"]) and math.isfinite(t["inference_gap"])
        assert t["iw_svi_images"] == 4
    # regularized models carry a paired difference with the unregularized model of the same objective
    selected_dvae = next(m for m in tested if m["family"] == "dvae")
    assert math.isfinite(selected_dvae["test"]["delta_log_px_vs_unregularized"])
    assert "delta_log_px_vs_unregularized" not in next(m for m in tested if m["family"] == "vae")["test"]
    assert (tmp_path / "out" / "air_table_models" / (selected_dvae["run"].rsplit("/", 1)[-1] + ".test_points.json")).exists()
    refs = {r["model"]: r for r in record["references"]}
    assert refs["VAE"]["ours_nll"] == pytest.approx(-next(m for m in models if m["family"] == "vae")["test"]["log_px"])
    md = (tmp_path / "out" / "air_table.md").read_text()
    assert "| WNI-IWAE (k=2) | H = 2 |" in md and "Pythae reproduction: 86.82" in md


def test_budget_errors():
    with pytest.raises(ValueError, match="epochs"):
        TrainBudget(epochs=0)
    with pytest.raises(ValueError, match="num_samples"):
        EvalBudget(num_samples=0)
    with pytest.raises(ValueError, match="test_size"):
        EvalBudget(test_size=1)
