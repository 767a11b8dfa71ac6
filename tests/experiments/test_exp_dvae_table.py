"""``reproduce-dvae-table`` end to end at a tiny budget: outputs, the published references, reuse of trained models."""

import json
import math
from pathlib import Path

from pyro_noisevae.cli import main as cli_main
from pyro_noisevae.experiments.dvae_table import DVAE_REFERENCES, dvae_config
from pyro_noisevae.experiments.scheduler import TrainBudget

REPO = Path(__file__).resolve().parents[2]


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
    # every run folder is the one dvae_config names for the cell
    tb = TrainBudget(**record["train_budget"])
    assert {r["run"] for r in record["rows"]} == {
        dvae_config(tb, root / "runs", r["model"], r["layers"], r["noise"]).out for r in record["rows"]}


def test_dvae_table_rerun_reuses_models(dvae_table):
    root, argv = dvae_table
    checkpoints = {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/checkpoint.pt")}
    assert len(checkpoints) == 2
    assert cli_main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/checkpoint.pt")} == checkpoints


def test_dvae_table_user_error_is_one_line(tmp_path, capsys):
    assert cli_main(["reproduce-dvae-table", "--out", str(tmp_path), "--epochs", "0", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "pyro-noisevae reproduce-dvae-table: error: epochs must be >= 1, got 0"


def test_committed_run_names_unchanged():
    """The committed table's budget still maps to the very run folders it was computed from."""
    record = json.loads((REPO / "results" / "evaluation" / "dvae_table1.json").read_text())
    tb = TrainBudget(**record["train_budget"])
    for r in record["rows"]:
        assert dvae_config(tb, "runs/evaluation/dvae", r["model"], r["layers"], r["noise"]).out == r["run"]
