"""Honest evaluation of trained VAEs: the evaluation budget, one model on data, and the ``evaluate`` command.

``pyro-noisevae evaluate RUN``: IWAE-k test log-likelihood (and optionally IW-SVI and the inference gaps) of a
run folder written by ``pyro-noisevae train``; writes ``RUN/evaluation_<split>.json``. :func:`evaluate_model`
is also what the paper tables (:mod:`~pyro_noisevae.experiments.dvae_table`,
:mod:`~pyro_noisevae.experiments.air_table`) report for each of their models.
"""

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pyro

from ..evaluation import importance_estimate, inference_gaps, iw_svi_estimate, iwae_bound, summarize
from ..training import load_run
from .common import cli_errors, fmt, load_split, write_json

__all__ = [
    "EvalBudget",
    "add_eval_budget_arguments",
    "eval_budget_from_args",
    "eval_data",
    "evaluate_model",
    "evaluate_run",
    "pointwise_estimates",
    "register",
]


@dataclass
class EvalBudget:
    """
    Evaluation budget.

    :ivar int test_size: random test images for IWAE-k and the bounds (``None``, or more than the split holds: the
        whole test split, e.g. 10,000 MNIST or 2,307 Caltech 101 images).
    :ivar int num_samples: ``k`` of the IWAE-k log-likelihood (the papers use 5000).
    :ivar int bound_repeats: groups of K samples averaged in the test bound (ELBO / IWAE-K bound).
    :ivar int iw_svi_size: test images for IW-SVI (a subset of the ``test_size`` images; 0 skips IW-SVI).
    :ivar int iw_svi_steps, iw_svi_particles: IW-SVI optimisation steps T and IWAE-K particles.
    :ivar int iw_svi_samples: ``k`` of the IWAE-k evaluation after IW-SVI.
    :ivar int valid_size, valid_samples: validation images and IWAE-k used for model selection (AIR;
        ``valid_size`` ``None`` or more than the split holds: the whole validation split).
    :ivar int chunk_size, batch_size: samples and data points per vectorized pass (memory bound).
    """

    test_size: int | None = 1000
    num_samples: int = 1000
    bound_repeats: int = 200
    iw_svi_size: int = 500
    iw_svi_steps: int = 50
    iw_svi_particles: int = 20
    iw_svi_samples: int = 1000
    valid_size: int = 1000
    valid_samples: int = 100
    chunk_size: int = 100
    batch_size: int = 100

    def __post_init__(self):
        for name in ("num_samples", "bound_repeats", "iw_svi_steps", "iw_svi_particles", "iw_svi_samples",
                     "valid_samples", "chunk_size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.test_size is not None and int(self.test_size) < 2:
            raise ValueError(f"test_size must be >= 2 or None, got {self.test_size}")
        if self.valid_size is not None and int(self.valid_size) < 1:
            raise ValueError(f"valid_size must be >= 1 or None, got {self.valid_size}")
        if int(self.iw_svi_size) < 0:
            raise ValueError(f"iw_svi_size must be >= 0, got {self.iw_svi_size}")


def eval_data(dataset, split, size, seed, binarize=None, data_root=None, device="cpu"):
    """A fixed random subset of a split (the binarized MNIST test set is sorted by label: never take the head)."""
    return load_split(dataset, split, size, seed + 2, root=data_root, binarize=binarize, seed=seed + 1).data.to(device)


def evaluate_model(vae, x, budget, bound_k=None, iw_svi=True, progress=False, seed=0, return_points=False):
    r"""
    Evaluate a trained :class:`~pyro_noisevae.models.VAE` with its **clean** amortized guide on data
    ``x (N, D)``. All quantities are per-image means in nats with their standard errors (``_se``: over
    images; ``_mc``: Monte Carlo error of the mean):

    * ``log_px``: IWAE-k, :math:`k` = ``budget.num_samples`` (with ``ess`` the mean effective sample size);
    * ``elbo``: :math:`\frac1k\sum_i \log w_i` from the same samples;
    * ``bound_K`` (when ``bound_k = K`` is given): the IWAE-K bound averaged over ``budget.bound_repeats``
      groups (the objective a K-sample model was trained on);
    * ``log_px_iw_svi``, ``elbo_iw_svi_subset``, ``inference_gap``: on the first ``budget.iw_svi_size``
      images, IW-SVI log-likelihood and the inference gap :math:`\log p(x) - \mathrm{ELBO}(q_\phi)` with
      :math:`\log p(x)` from IW-SVI.

    With ``return_points=True`` returns ``(record, points)``, ``points`` holding the per-image IWAE-k
    ``log_px`` and ``elbo`` as lists (for paired comparisons of models evaluated on the same images).
    """
    pyro.set_rng_seed(seed)
    common = dict(chunk_size=budget.chunk_size, batch_size=budget.batch_size, progress=progress)
    t0 = time.perf_counter()
    est = importance_estimate(vae.model, vae.guide, x, num_samples=budget.num_samples, max_plate_nesting=1, **common)
    s = est.summary()
    rec = {
        "num_images": int(x.shape[0]),
        "num_samples": budget.num_samples,
        "log_px": s["log_px_mean"],
        "log_px_se": s["log_px_stderr"],
        "log_px_mc": s["log_px_mc_stderr"],
        "elbo": s["elbo_mean"],
        "elbo_se": s["elbo_stderr"],
        "elbo_mc": s["elbo_mc_stderr"],
        "ess": est.ess.double().mean().item(),
    }
    if bound_k is not None:
        bound, bound_mc = iwae_bound(vae.model, vae.guide, x, num_particles=int(bound_k),
                                     num_repeats=budget.bound_repeats, max_plate_nesting=1, **common)
        b = summarize(bound, bound_mc)
        rec.update({"bound_k": int(bound_k), "bound": b["mean"], "bound_se": b["stderr"], "bound_mc": b["mc_stderr"]})
    if iw_svi and budget.iw_svi_size > 0:
        n = min(int(budget.iw_svi_size), x.shape[0])
        refined = iw_svi_estimate(
            vae.model, vae.guide, x[:n], num_steps=budget.iw_svi_steps, num_particles=budget.iw_svi_particles,
            num_samples=budget.iw_svi_samples, max_plate_nesting=1, **common,
        )
        gap = refined.log_px - est.elbo[:n]
        r = summarize(refined.log_px, refined.stderr)
        g = summarize(gap, (refined.stderr.pow(2) + est.elbo_stderr[:n].pow(2)).sqrt())
        rec.update({
            "iw_svi_images": n,
            "iw_svi": {"steps": budget.iw_svi_steps, "particles": budget.iw_svi_particles, "samples": budget.iw_svi_samples},
            "log_px_iw_svi": r["mean"],
            "log_px_iw_svi_se": r["stderr"],
            "log_px_iw_svi_mc": r["mc_stderr"],
            "log_px_iwae_subset": est.log_px[:n].double().mean().item(),
            "elbo_iw_svi_subset": est.elbo[:n].double().mean().item(),
            "inference_gap": g["mean"],
            "inference_gap_se": g["stderr"],
        })
    rec["eval_seconds"] = time.perf_counter() - t0
    if return_points:
        return rec, _points(est)
    return rec


def _points(est):
    return {"log_px": est.log_px.double().cpu().tolist(), "elbo": est.elbo.double().cpu().tolist()}


def pointwise_estimates(vae, x, budget, seed):
    """The per-image IWAE-k values of :func:`evaluate_model` (same seed, same first pass: identical numbers)."""
    pyro.set_rng_seed(seed)
    return _points(importance_estimate(vae.model, vae.guide, x, num_samples=budget.num_samples,
                                       chunk_size=budget.chunk_size, batch_size=budget.batch_size,
                                       max_plate_nesting=1, progress=False))


def evaluate_run(run, split="test", eval_size=None, budget=None, iw_svi=False, gaps=False, device="cpu", seed=0,
                 out=None, progress=True, data_root=None):
    """
    Evaluate the model of a run folder written by ``pyro-noisevae train`` on a split of its dataset:
    IWAE-k log-likelihood and ELBO (:func:`evaluate_model`), optionally IW-SVI, and optionally the inference /
    approximation / amortization gaps (:func:`~pyro_noisevae.evaluation.inference_gaps`, on the IW-SVI
    subset). The data are prepared as the trainer prepared its evaluation data (same binarization).

    :returns: the result dict, also written to ``out`` (default ``RUN/evaluation_<split>.json``).
    """
    run = Path(run)
    budget = budget or EvalBudget(test_size=eval_size)
    vae, cfg, _ = load_run(run, map_location=device)
    vae = vae.to(device).eval()
    binarize = {"threshold": "threshold", "dynamic": "dynamic"}.get(cfg.binarize)
    x = eval_data(cfg.dataset, split, eval_size, seed, binarize=binarize, data_root=data_root or cfg.data_root,
                  device=device)
    vae.likelihood.check_data(x)
    bound_k = cfg.num_particles if cfg.objective == "iwae" and cfg.num_particles > 1 else None
    rec = evaluate_model(vae, x, budget, bound_k=bound_k, iw_svi=iw_svi, progress=progress, seed=seed)
    if gaps:
        n = min(max(int(budget.iw_svi_size), 1), x.shape[0])
        pyro.set_rng_seed(seed)
        result = inference_gaps(
            vae.model, vae.guide, x[:n], log_px="iw-svi", num_samples=budget.iw_svi_samples,
            elbo_samples=budget.num_samples, num_steps=budget.iw_svi_steps, num_particles=budget.iw_svi_particles,
            chunk_size=budget.chunk_size, batch_size=budget.batch_size, max_plate_nesting=1, progress=progress,
        )
        rec["gaps"] = {k: v for k, v in result.summary().items()}
        rec["gaps"]["num_images"] = n
    record = {
        "run": str(run),
        "split": split,
        "dataset": cfg.dataset,
        "config": cfg.to_dict(),
        "budget": dataclasses.asdict(budget),
        "seed": seed,
        "device": str(device),
        "results": rec,
    }
    write_json(Path(out) if out is not None else run / f"evaluation_{split}.json", record)
    return record


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------


def add_eval_budget_arguments(p, **defaults):
    """The ``evaluation budget`` argument group, defaults from :class:`EvalBudget` updated by ``defaults``."""
    d = dataclasses.replace(EvalBudget(), **defaults)
    g = p.add_argument_group("evaluation budget")
    g.add_argument("--test-size", type=int, default=d.test_size, help="random test images (default %(default)s; 0 = all)")
    g.add_argument("--num-samples", type=int, default=d.num_samples, help="k of the IWAE-k log-likelihood")
    g.add_argument("--bound-repeats", type=int, default=d.bound_repeats, help="groups of K samples in the test bound")
    g.add_argument("--iw-svi-size", type=int, default=d.iw_svi_size, help="test images for IW-SVI (0: skip)")
    g.add_argument("--iw-svi-steps", type=int, default=d.iw_svi_steps)
    g.add_argument("--iw-svi-particles", type=int, default=d.iw_svi_particles)
    g.add_argument("--iw-svi-samples", type=int, default=d.iw_svi_samples)
    g.add_argument("--valid-size", type=int, default=d.valid_size,
                   help="random validation images for model selection (default %(default)s; 0 = all)")
    g.add_argument("--valid-samples", type=int, default=d.valid_samples)
    g.add_argument("--chunk-size", type=int, default=d.chunk_size, help="samples per vectorized pass")
    g.add_argument("--eval-batch-size", type=int, default=d.batch_size, help="data points per vectorized pass")


def eval_budget_from_args(args):
    return EvalBudget(test_size=args.test_size or None, num_samples=args.num_samples, bound_repeats=args.bound_repeats,
                      iw_svi_size=args.iw_svi_size, iw_svi_steps=args.iw_svi_steps,
                      iw_svi_particles=args.iw_svi_particles, iw_svi_samples=args.iw_svi_samples,
                      valid_size=args.valid_size or None, valid_samples=args.valid_samples, chunk_size=args.chunk_size,
                      batch_size=args.eval_batch_size)


@cli_errors
def _evaluate_main(args):
    budget = eval_budget_from_args(args)
    record = evaluate_run(args.run, split=args.split, eval_size=args.test_size or None, budget=budget,
                          iw_svi=args.iw_svi, gaps=args.gaps, device=args.device, seed=args.seed, out=args.out,
                          progress=not args.no_progress, data_root=args.data_root)
    r = record["results"]
    print(f"{args.split}: IWAE-{r['num_samples']} log p(x) = {fmt(r['log_px'], r['log_px_se'])} nats, "
          f"ELBO = {fmt(r['elbo'], r['elbo_se'])} ({r['num_images']} images)")
    if "log_px_iw_svi" in r:
        print(f"IW-SVI log p(x) = {fmt(r['log_px_iw_svi'], r['log_px_iw_svi_se'])}, inference gap = "
              f"{fmt(r['inference_gap'], r['inference_gap_se'])} ({r['iw_svi_images']} images)")
    if "gaps" in r:
        g = r["gaps"]
        print("gaps: " + ", ".join(f"{k} = {fmt(g[k]['mean'], g[k]['stderr'])}"
                                   for k in ("inference_gap", "approximation_gap", "amortization_gap")))


def register(subparsers):
    """Add the ``evaluate`` subcommand to a CLI."""
    p = subparsers.add_parser(
        "evaluate",
        help="test log-likelihood of a trained run folder: IWAE-k, optionally IW-SVI and inference gaps",
        description="Evaluate the model of a run folder (from `pyro-noisevae train`) on a split of its dataset with "
                    "the clean amortized guide. Writes RUN/evaluation_<split>.json (or --out).",
    )
    p.add_argument("run", help="run folder holding checkpoint.pt")
    p.add_argument("--split", default="test", choices=["train", "valid", "test", "trainval"])
    p.add_argument("--iw-svi", action="store_true", help="also run IW-SVI on the first --iw-svi-size images")
    p.add_argument("--gaps", action="store_true", help="also the inference/approximation/amortization gaps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("-o", "--out", default=None, help="JSON output (default RUN/evaluation_<split>.json)")
    p.add_argument("--no-progress", action="store_true")
    add_eval_budget_arguments(p, test_size=None, num_samples=5000, iw_svi_size=500)
    p.set_defaults(func=_evaluate_main)
