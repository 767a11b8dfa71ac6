"""Im et al. (2017), Table 1: DVAE and DIWAE with salt-and-pepper encoder noise on binarized MNIST.

``pyro-noisevae reproduce-dvae-table``: salt-and-pepper corruption of the encoder input at 0/5/10/15 %, DVAE
with K = 1 and K = 5 samples and DIWAE with K = 5, one and two hidden layers; the negative test bound next to
the published numbers. Every model is trained with :func:`pyro_noisevae.training.train` into
``<runs>/<name>-<hash>`` (the hash covers every setting that changes the weights), so re-running the command
reuses finished models and resumes interrupted ones. Evaluated models are cached as JSON next to the table.
Outputs: ``<out>/dvae_table1.json`` (budget, command, every number), ``.md`` and ``.png``.

References:

1. D. J. Im, S. Ahn, R. Memisevic, Y. Bengio, *Denoising Criterion for Variational Auto-encoding Framework*,
   AAAI 2017.
"""

import dataclasses
import json
import time
from pathlib import Path

import torch

from ..training import load_run
from .common import cli_errors, figure, fmt, invoked_command, log, save_figure, write_json, write_text
from .evaluate import EvalBudget, add_eval_budget_arguments, eval_budget_from_args, eval_data, evaluate_model
from .scheduler import TrainBudget, add_train_budget_arguments, table_run_name, train_all, train_budget_from_args

__all__ = ["DVAE_LABELS", "DVAE_MODELS", "DVAE_REFERENCES", "dvae_config", "register", "reproduce_dvae_table"]

#: Im et al. (2017), Table 1: negative variational lower bound on MNIST test data (nats), salt-and-pepper
#: noise level (%) -> (mean, sd over runs), for (model, hidden layers)
DVAE_REFERENCES = {
    ("dvae-k1", 1): {0: (96.14, 0.09), 5: (95.52, 0.12), 10: (96.12, 0.06), 15: (96.83, 0.17)},
    ("dvae-k1", 2): {0: (95.90, 0.23), 5: (95.34, 0.17), 10: (95.65, 0.14), 15: (96.17, 0.17)},
    ("dvae-k5", 1): {0: (95.20, 0.07), 5: (95.01, 0.04), 10: (95.55, 0.07), 15: (96.41, 0.11)},
    ("dvae-k5", 2): {0: (95.01, 0.07), 5: (94.71, 0.13), 10: (94.90, 0.22), 15: (96.41, 0.11)},
    ("diwae-k5", 1): {0: (94.36, 0.07), 5: (93.67, 0.10), 10: (93.97, 0.07), 15: (94.35, 0.08)},
    ("diwae-k5", 2): {0: (94.31, 0.07), 5: (93.08, 0.08), 10: (93.35, 0.13), 15: (93.71, 0.07)},
}

#: model name -> (objective, K)
DVAE_MODELS = {"dvae-k1": ("trace", 1), "dvae-k5": ("trace", 5), "diwae-k5": ("iwae", 5)}
DVAE_LABELS = {"dvae-k1": "DVAE (K=1)", "dvae-k5": "DVAE (K=5)", "diwae-k5": "DIWAE (K=5)"}


def dvae_config(train_budget, runs_dir, model, layers, noise):
    """The :class:`~pyro_noisevae.training.TrainConfig` of one cell; its ``out`` is ``runs_dir/<name>-<hash>``."""
    objective, K = DVAE_MODELS[model]
    cfg = train_budget.train_config(
        dataset="binarized-mnist",
        train_split="train",
        eval_split="valid",
        eval_size=1000,
        likelihood="bernoulli",
        sigma=None,
        hidden_dims=(train_budget.hidden,) * layers,
        objective=objective,
        num_particles=K,
        corruption="salt-and-pepper" if noise > 0 else "none",
        corruption_level=noise / 100 if noise > 0 else 0.0,
    )
    cfg.out = str(Path(runs_dir) / table_run_name(cfg, f"{model}-h{layers}-sp{noise:g}"))
    return cfg


def reproduce_dvae_table(out="results/evaluation", runs_dir="runs/evaluation/dvae", noise_levels=(0, 5, 10, 15),
                         layers=(1, 2), models=tuple(DVAE_MODELS), train_budget=None, eval_budget=None, jobs=1,
                         progress=True, command=None):
    r"""
    Im et al. (2017), Table 1: negative test bound of DVAE (K = 1, 5) and DIWAE (K = 5) on binarized MNIST
    (Larochelle's static binarization, the 50,000-image train split), salt-and-pepper corruption of the
    encoder input at ``noise_levels`` percent (0 % is the plain VAE / IWAE), with ``layers`` hidden layers of
    ``train_budget.hidden`` units. The reported number is the bound the model was trained on, evaluated
    with the clean encoder: :math:`-\mathrm{ELBO}` for DVAE, :math:`-\mathcal L_5` for DIWAE (mean over
    ``eval_budget.test_size`` test images), with the IWAE-k negative log-likelihood next to it.

    :returns: the table record (also written to ``out/dvae_table1.{json,md,png}``).
    """
    train_budget = train_budget or TrainBudget()
    eval_budget = eval_budget or EvalBudget(iw_svi_size=0)
    out = Path(out)
    cache = out / "dvae_table1_models"
    specs = [(m, h, n) for m in models for h in layers for n in noise_levels]
    for m, _, _ in specs:
        if m not in DVAE_MODELS:
            raise ValueError(f"unknown DVAE-table model {m!r}; choose from {sorted(DVAE_MODELS)}")
    configs = [dvae_config(train_budget, runs_dir, m, h, n) for m, h, n in specs]
    t_start = time.perf_counter()
    todo = [cfg for cfg in configs if not (cache / f"{Path(cfg.out).name}.json").exists()]
    train_seconds = train_all(todo, jobs=jobs, progress=progress)
    x_test = eval_data("binarized-mnist", "test", eval_budget.test_size, train_budget.seed,
                       data_root=train_budget.data_root, device=train_budget.device)
    rows = []
    for (model, h, noise), cfg in zip(specs, configs):
        path = cache / f"{Path(cfg.out).name}.json"
        if path.exists():
            rec = json.loads(path.read_text())
        else:
            log(progress, f"[evaluate] {Path(cfg.out).name}")
            vae, _, history = load_run(cfg.out, map_location=train_budget.device)
            objective, K = DVAE_MODELS[model]
            rec = evaluate_model(vae.to(train_budget.device).eval(), x_test, eval_budget,
                                 bound_k=K if objective == "iwae" else None, iw_svi=False, progress=False,
                                 seed=train_budget.seed)
            rec.update({"model": model, "layers": h, "noise": noise, "run": cfg.out,
                        "train_seconds": train_seconds.get(cfg.out, 0.0),
                        "final_train_loss": next((r["train_loss"] for r in reversed(history) if r["kind"] == "eval"), None)})
            write_json(path, rec)
        # the bound the model was trained on: ELBO (DVAE, any K) or the IWAE-K bound (DIWAE)
        if "bound" in rec:
            rec["neg_bound"], rec["neg_bound_se"], rec["bound_name"] = -rec["bound"], rec["bound_se"], f"IWAE-{rec['bound_k']} bound"
        else:
            rec["neg_bound"], rec["neg_bound_se"], rec["bound_name"] = -rec["elbo"], rec["elbo_se"], "ELBO"
        ref = DVAE_REFERENCES.get((model, h), {}).get(int(noise))
        rec["reference"] = ref[0] if ref else None
        rows.append(rec)
    record = {
        "table": "Im et al. (2017) Table 1: negative test bound on binarized MNIST with salt-and-pepper encoder noise",
        "command": command,
        "train_budget": dataclasses.asdict(train_budget),
        "eval_budget": dataclasses.asdict(eval_budget),
        "noise_levels": list(noise_levels),
        "layers": list(layers),
        "models": list(models),
        "rows": rows,
        "wall_seconds": time.perf_counter() - t_start,
    }
    write_json(out / "dvae_table1.json", record)
    write_text(out / "dvae_table1.md", _markdown(record))
    save_figure(_figure(record), out / "dvae_table1.png", dpi=100)
    return record


def _markdown(record):
    tb, eb = record["train_budget"], record["eval_budget"]
    noise = record["noise_levels"]
    lines = [
        "# DVAE Table 1 (Im et al. 2017): negative test bound, binarized MNIST, salt-and-pepper encoder noise",
        "",
        f"Budget: {tb['epochs']} epochs on {tb['train_size'] or 50000} training images, batch {tb['batch_size']}, "
        f"Adam lr {tb['lr']}, hidden width {tb['hidden']}, z_dim {tb['z_dim']}, seed {tb['seed']}; bounds on "
        f"{eb['test_size'] or 10000} random test images ({eb['num_samples']} samples for the ELBO / IWAE-k, "
        f"{eb['bound_repeats']} groups for the IWAE-5 bound). Command: `{record['command']}`",
        "",
        "Each cell: ours (−ELBO for DVAE, −IWAE-5 bound for DIWAE; ± standard error over test images) / paper.",
        "",
        "| Model | Hidden layers | " + " | ".join(f"{n:g} %" for n in noise) + " |",
        "|---|---|" + "---|" * len(noise),
    ]
    by = {(r["model"], r["layers"], r["noise"]): r for r in record["rows"]}
    for m in record["models"]:
        for h in record["layers"]:
            cells = []
            for n in noise:
                r = by.get((m, h, n))
                if r is None:
                    cells.append("–")
                    continue
                ref = "–" if r["reference"] is None else f"{r['reference']:.2f}"
                cells.append(f"{fmt(r['neg_bound'], r['neg_bound_se'])} / {ref}")
            lines.append(f"| {DVAE_LABELS[m]} | {h} | " + " | ".join(cells) + " |")
    lines += ["", f"Negative IWAE-{record['eval_budget']['num_samples']} log-likelihood (same models, same images):", "",
              "| Model | Hidden layers | " + " | ".join(f"{n:g} %" for n in noise) + " |",
              "|---|---|" + "---|" * len(noise)]
    for m in record["models"]:
        for h in record["layers"]:
            cells = [fmt(-by[(m, h, n)]["log_px"], by[(m, h, n)]["log_px_se"]) if (m, h, n) in by else "–" for n in noise]
            lines.append(f"| {DVAE_LABELS[m]} | {h} | " + " | ".join(cells) + " |")
    diffs = [r["neg_bound"] - r["reference"] for r in record["rows"] if r["reference"] is not None]
    if diffs:
        lines += ["", f"Ours minus paper: mean {sum(diffs) / len(diffs):+.2f} nats, range "
                      f"[{min(diffs):+.2f}, {max(diffs):+.2f}] over {len(diffs)} cells."]
    return "\n".join(lines) + "\n"


def _figure(record):
    layers = record["layers"]
    fig = figure(figsize=(5 * len(layers), 4))
    axes = fig.subplots(1, len(layers), squeeze=False)
    by = {(r["model"], r["layers"], r["noise"]): r for r in record["rows"]}
    for ax, h in zip(axes[0], layers):
        for i, m in enumerate(record["models"]):
            pts = [(n, by[(m, h, n)]) for n in record["noise_levels"] if (m, h, n) in by]
            color = f"C{i}"
            ax.errorbar([n for n, _ in pts], [r["neg_bound"] for _, r in pts], yerr=[r["neg_bound_se"] for _, r in pts],
                        marker="o", color=color, label=f"{DVAE_LABELS[m]} (ours)")
            ref = DVAE_REFERENCES.get((m, h), {})
            if ref:
                ns = sorted(ref)
                ax.plot(ns, [ref[n][0] for n in ns], ls="--", marker="x", color=color, label=f"{DVAE_LABELS[m]} (paper)")
        ax.set_xlabel("salt-and-pepper noise (%)")
        ax.set_ylabel("negative test bound (nats)")
        ax.set_title(f"{h} hidden layer{'s' if h > 1 else ''}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@cli_errors
def _dvae_main(args):
    torch.set_num_threads(args.threads)
    reproduce_dvae_table(out=args.out, runs_dir=args.runs, noise_levels=tuple(args.noise_levels), layers=tuple(args.layers),
                         models=tuple(args.models), train_budget=train_budget_from_args(args),
                         eval_budget=eval_budget_from_args(args), jobs=args.jobs, progress=not args.no_progress,
                         command=invoked_command())
    print((Path(args.out) / "dvae_table1.md").read_text())


def register(subparsers):
    """Add the ``reproduce-dvae-table`` subcommand to a CLI."""
    p = subparsers.add_parser(
        "reproduce-dvae-table",
        help="Im et al. (2017) Table 1: DVAE/DIWAE with salt-and-pepper encoder noise on binarized MNIST",
        description="Train DVAE (K=1, 5) and DIWAE (K=5) at salt-and-pepper noise levels with 1 and 2 hidden layers "
                    "and report the negative test bound next to the paper. Resumable. The default budget (24 models x "
                    "2,500 steps, bounds on 2,000 test images) is estimated at 30-60 minutes on one core of a 2-core "
                    "CPU; --jobs 2 trains two models at a time.",
    )
    p.add_argument("--noise-levels", type=float, nargs="+", default=[0, 5, 10, 15], help="percent")
    p.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--models", nargs="+", default=list(DVAE_MODELS), choices=list(DVAE_MODELS))
    p.add_argument("-o", "--out", default="results/evaluation")
    p.add_argument("--runs", default="runs/evaluation/dvae", help="folder of the trained models")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process (default %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    add_train_budget_arguments(p, epochs=5)
    add_eval_budget_arguments(p, test_size=2000, num_samples=100, bound_repeats=20, iw_svi_size=0)
    p.set_defaults(func=_dvae_main)
