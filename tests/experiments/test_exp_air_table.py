"""``reproduce-air-table`` at a tiny budget on binarized MNIST and Caltech 101 Silhouettes; run names kept."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from pyro_noisevae.cli import main as cli_main
from pyro_noisevae.experiments.air_table import AIR_DATASETS, AIR_FAMILIES, air_config, reproduce_air_table
from pyro_noisevae.experiments.evaluate import EvalBudget
from pyro_noisevae.experiments.scheduler import TrainBudget

REPO = Path(__file__).resolve().parents[2]
TINY_TRAIN = ["--train-size", "200", "--epochs", "1", "--batch-size", "50", "--hidden", "16", "--z-dim", "2"]
# --test-size above the 2,307 Caltech test images and --valid-size 0 (all 2,264): both mean the whole split
TINY_EVAL = ["--test-size", "5000", "--valid-size", "0", "--num-samples", "10", "--valid-samples", "10",
             "--bound-repeats", "2", "--iw-svi-size", "5", "--iw-svi-steps", "2", "--iw-svi-particles", "3",
             "--iw-svi-samples", "10"]
GRID = ["--sigmas", "0.2", "--bounds", "2", "--iwae-k", "2", "--reference-k", "3"]


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


@pytest.fixture(scope="module")
def caltech_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("air-caltech")
    argv = ["reproduce-air-table", "--dataset", "caltech101", "--out", str(root / "out"), "--runs", str(root / "runs"),
            "--no-progress", *GRID, *TINY_TRAIN, *TINY_EVAL]
    assert cli_main(argv) == 0
    return root


def test_caltech_air_table_outputs(caltech_table):
    out = caltech_table / "out"
    for suffix in ("json", "md", "png"):
        assert (out / f"air_table_caltech101.{suffix}").stat().st_size > 0
    assert (out / "air_table_caltech101_models").is_dir()
    assert not (out / "air_table.md").exists() and not (out / "air_table_models").exists()  # MNIST files untouched
    record = json.loads((out / "air_table_caltech101.json").read_text())
    assert record["dataset"] == "caltech101" and "Caltech 101 Silhouettes" in record["table"]
    assert record["command"].startswith("pyro-noisevae")
    # sizes beyond the split (or 0) are the whole split; the training subset is the requested 200 images
    assert (record["num_train_images"], record["num_valid_images"], record["num_test_images"]) == (200, 2264, 2307)
    models = record["models"]
    assert len(models) == 7  # vae, dvae, wni-vae, iwae(k=2), diwae, wni-iwae, reference iwae(k=3)
    for m in models:
        assert Path(m["run"]).parent == caltech_table / "runs" and Path(m["run"]).name.startswith("caltech101-")
        assert m["valid"]["num_images"] == 2264 and math.isfinite(m["valid"]["log_px"])
    tested = [m for m in models if "test" in m]
    assert len(tested) == 6 + 1
    for m in tested:
        assert m["test"]["num_images"] == 2307 and m["test"]["iw_svi_images"] == 5
        assert math.isfinite(m["test"]["log_px"]) and math.isfinite(m["test"]["inference_gap"])
    # no published numbers for Caltech; the unregularized models are still listed with our NLL
    refs = {r["model"]: r for r in record["references"]}
    assert set(refs) == {"VAE", "IWAE (k=2)", "IWAE (k=3)"}
    assert all(r["published"] == {} for r in refs.values())
    assert refs["VAE"]["ours_nll"] == pytest.approx(-next(m for m in models if m["family"] == "vae")["test"]["log_px"])


def test_caltech_air_table_markdown(caltech_table):
    md = (caltech_table / "out" / "air_table_caltech101.md").read_text()
    title = md.splitlines()[0]
    assert title.startswith("# AIR table (Shu et al. 2018): Caltech 101 Silhouettes") and "MNIST" not in title
    assert "on 200 training images" in md and "on 2264 validation images" in md and "on 2307 random test images" in md
    assert "| WNI-IWAE (k=2) | H = 2 |" in md and "| IWAE (k=3) |" in md
    # no MNIST reference rows or published column, and the Markdown says why
    for mnist_ref in ("Pythae reproduction:", "IWAE paper (Burda et al.)", "87.63", "87.10", "89.78", "86.82", "88.71",
                      "| Published |", "next to published numbers"):
        assert mnist_ref not in md
    assert "No published column for Caltech 101 Silhouettes" in md


def test_caltech_air_table_rerun_reuses_models(caltech_table):
    first = json.loads((caltech_table / "out" / "air_table_caltech101.json").read_text())
    checkpoints = {p: p.stat().st_mtime_ns for p in (caltech_table / "runs").glob("*/checkpoint.pt")}
    assert len(checkpoints) == 7
    tb = TrainBudget(epochs=1, train_size=200, batch_size=50, hidden=16, z_dim=2)
    eb = EvalBudget(test_size=5000, num_samples=10, bound_repeats=2, iw_svi_size=5, iw_svi_steps=2, iw_svi_particles=3,
                    iw_svi_samples=10, valid_size=None, valid_samples=10)
    record = reproduce_air_table(out=caltech_table / "out", runs_dir=caltech_table / "runs", sigmas=(0.2,), bounds=(2.0,),
                                 iwae_k=2, reference_k=3, train_budget=tb, eval_budget=eb, progress=False,
                                 command="test", dataset="caltech101")
    assert {p: p.stat().st_mtime_ns for p in (caltech_table / "runs").glob("*/checkpoint.pt")} == checkpoints
    # every number read back from the cache of the first run
    assert [m["valid"]["log_px"] for m in record["models"]] == [m["valid"]["log_px"] for m in first["models"]]
    assert record["selected"] == first["selected"]


def test_mnist_run_names_unchanged(tmp_path):
    budgets = [TrainBudget(), TrainBudget(epochs=4), TrainBudget(epochs=1, train_size=200, hidden=16)]
    for tb in budgets:
        for family, (objective, reg) in AIR_FAMILIES.items():
            K = 5 if objective == "iwae" else 1
            for strength in ([None] if reg is None else [0.2, 3.0]):
                default = air_config(tb, tmp_path, family, strength, K)
                explicit = air_config(tb, tmp_path, family, strength, K, "binarized-mnist")
                caltech = air_config(tb, tmp_path, family, strength, K, "caltech101")
                assert default.out == explicit.out and default.dataset == "binarized-mnist"
                assert caltech.dataset == "caltech101"
                tag, digest = Path(default.out).name.rsplit("-", 1)
                caltech_tag, caltech_digest = Path(caltech.out).name.rsplit("-", 1)
                assert caltech_tag == f"caltech101-{tag}" and caltech_digest != digest  # the dataset is hashed too
    spec = AIR_DATASETS["binarized-mnist"]
    assert (spec["stem"], spec["runs_dir"], spec["tag_prefix"]) == ("air_table", "runs/evaluation/air", "")
    # the committed tables: their budgets still map to the very run folders they were computed from
    for name, runs in (("air_table.json", "runs/evaluation/air"),
                       ("air_table_caltech101.json", "runs/evaluation/air-caltech101")):
        committed = REPO / "results" / "evaluation" / name
        assert committed.exists(), f"results/evaluation/{name} is part of the repository"
        record = json.loads(committed.read_text())
        tb = TrainBudget(**record["train_budget"])
        ref_tb = dataclasses.replace(tb, epochs=record["reference_epochs"])
        for m in record["models"]:
            reference = m["family"] == "iwae" and m["K"] != record["iwae_k"]
            cfg = air_config(ref_tb if reference else tb, runs, m["family"], m["strength"], m["K"],
                             record.get("dataset", "binarized-mnist"))
            assert cfg.out == m["run"]


def test_unknown_air_dataset(tmp_path):
    with pytest.raises(ValueError, match="unknown AIR-table dataset"):
        reproduce_air_table(out=tmp_path, dataset="mnist", progress=False)
