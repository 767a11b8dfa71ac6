"""
Experiment (b), ``walk-jump``: one long walk-jump chain on the UVB (and DEEN) energy, classes visited; and
``walk-jump --chains C``: many chains in parallel at several step sizes, summarized over chains.
"""

import json
import time

import pyro
import torch

from ...empirical_bayes import walk_jump
from ..common import load_torch, save_figure, save_torch
from .denoising import Budget, ExperimentRun
from .models import jsonable, load_mnist, model_energy, model_meta, sigma_tag, train_classifier, train_model
from .reports import CHAIN_COLUMNS, chains_figure, chains_markdown, classes_figure, jumps_figure, walk_markdown

__all__ = ["chain_summary", "class_stats", "walk_jump_chains", "walk_jump_experiment"]


def class_stats(labels, confidence, threshold):
    """Classes visited and class transitions of a chain's jump ``labels``, all and confident ones only."""
    labels = labels.tolist()
    transitions = sum(a != b for a, b in zip(labels[:-1], labels[1:]))
    confident = [lab for lab, c in zip(labels, confidence.tolist()) if c >= threshold]
    counts = [labels.count(k) for k in range(10)]
    # transitions between consecutive confident jumps: label flicker on ambiguous jumps does not count
    confident_transitions = sum(a != b for a, b in zip(confident[:-1], confident[1:]))
    return {
        "num_jumps": len(labels),
        "classes_visited": len(set(labels)),
        "class_counts": counts,
        "transitions": transitions,
        "confident_threshold": threshold,
        "confident_jumps": len(confident),
        "confident_fraction": len(confident) / len(labels) if labels else 0.0,
        "classes_visited_confident": len(set(confident)),
        "transitions_confident": confident_transitions,
        "mean_confidence": float(confidence.mean()),
        "first_visit_jump": {str(k): labels.index(k) for k in sorted(set(labels))},
    }


def chain_summary(labels, confidence, threshold):
    """
    :func:`class_stats` of every chain of jump ``labels`` and classifier ``confidence`` of shape ``(J, C)``
    (jumps × chains), and their summary over chains: mean, min and max of each statistic of
    :data:`~.reports.CHAIN_COLUMNS`, the classes visited by the chains together, the number of chains
    that visit all 10 and the jump by which they have (median and max over those chains, the lower median
    for an even count; ``None`` if no chain does), and the jumps per class summed over chains.

    :returns: ``(per_chain, summary)``: a list of ``C`` dicts and a dict.
    """
    per_chain = [class_stats(labels[:, c], confidence[:, c], threshold) for c in range(labels.shape[1])]
    summary = {key: {"mean": sum(s[key] for s in per_chain) / len(per_chain), "min": min(s[key] for s in per_chain),
                     "max": max(s[key] for s in per_chain)} for key in CHAIN_COLUMNS}
    # the jump (counted from 0) by which a chain has seen all 10 classes, for the chains that see them all
    to_all = sorted(max(s["first_visit_jump"].values()) for s in per_chain if s["classes_visited"] == 10)
    summary.update(num_chains=len(per_chain), jumps_per_chain=int(labels.shape[0]), confident_threshold=threshold,
                   classes_over_all_chains=len(set(labels.flatten().tolist())),
                   chains_visiting_all_classes=len(to_all),
                   class_counts_all_chains=[sum(s["class_counts"][k] for s in per_chain) for k in range(10)],
                   jumps_to_all_classes={"median": to_all[(len(to_all) - 1) // 2], "max": to_all[-1]} if to_all else None)
    return per_chain, summary


def _setup(out, budget, classifier_epochs, progress):
    """The run, the models' configuration and the digit classifier (trained or loaded) with its test accuracy."""
    cfg = budget.config()
    run = ExperimentRun(out, budget)
    x_test, t_test = load_mnist("test", root=budget.data_root)
    clf, acc = train_classifier(run.out, run.x_train, run.t_train, x_test, t_test, classifier_epochs, cfg["seed"],
                                run.device, progress)
    return run, cfg, clf, acc


def _chains(kind, module, sigma, cfg, chain_cfg, num_chains, stage_path, device, progress):
    """
    Jumps ``(J, C, D)`` of ``num_chains`` walk-jump chains run as one batch on the energy of ``module``
    (``chain_cfg``: the keywords of the walk and ``energy_particles``, ``seed``), cached in ``stage_path``
    under a key of all the settings.
    """
    key = json.dumps(jsonable(dict(chain_cfg, num_chains=num_chains, model=model_meta(kind, sigma, cfg),
                                   epochs=cfg["epochs"])))
    stage = load_torch(stage_path) if stage_path.is_file() else None
    if stage is None or stage["key"] != key:
        energy = model_energy(kind, module, chain_cfg["energy_particles"])
        gen = torch.Generator(device=device).manual_seed(chain_cfg["seed"])
        torch.manual_seed(chain_cfg["seed"])
        t0 = time.time()
        res = walk_jump(energy, sigma, chain_cfg["num_steps"], num_chains=num_chains,
                        jump_every=chain_cfg["jump_every"], eps_scale=chain_cfg["eps_scale"],
                        friction=chain_cfg["friction"], inverse_mass=chain_cfg["inverse_mass"], save_every=0,
                        generator=gen, progress=progress)
        stage = {"key": key, "jumps": res.jumps, "jump_steps": res.jump_steps, "seconds": time.time() - t0}
        save_torch(stage_path, stage)
    return stage


@torch.no_grad()
def _classify(clf, jumps, device):
    """Classifier ``(confidence, label)`` of jumps ``(..., D)``, each of shape ``(...)``."""
    return clf(jumps.to(device)).softmax(-1).cpu().max(-1)


def walk_jump_experiment(out="results/empirical_bayes", sigma=1.0, *, num_steps=10_000, jump_every=20, eps_scale=0.5,
                         friction=0.5, inverse_mass=1.0, energy_particles=8, models=("uvb", "deen"),
                         classifier_epochs=3, confident_threshold=0.9, progress=True, **budget):
    r"""
    Experiment (b): one long walk-jump chain at σ (default 1) on each learned energy (UVB first, DEEN for
    contrast), started from :math:`U(0,1)^{784} + N(0, \sigma^2 I)`, with underdamped Langevin steps
    :math:`\delta = \mathrm{eps\_scale}\cdot\sigma`, friction and inverse mass as given, and a jump
    :math:`\hat x(y_t)` every ``jump_every`` steps. The jumps (after the one at step 0) are labelled by an MLP
    digit classifier trained here on the MNIST training split (its test accuracy is reported): number of
    digit classes visited, class transitions between consecutive jumps, and the same counts restricted to
    jumps the classifier labels with probability ≥ ``confident_threshold``.

    The models are those of :func:`uvb_denoise` (same checkpoints when run in the same ``out`` with the same
    settings), trained here if missing. The UVB energy averages ``energy_particles`` latent samples per step.

    Writes ``walk_jump.json``, ``walk_jump.md``, ``walk_jump_<model>.png`` (jumps) and ``walk_jump_classes.png``.

    :param budget: the settings of the models, keywords of :class:`~.denoising.Budget` (``epochs``,
        ``batch_size``, ``lr``, ``z_dim``, ``hidden_dims``, ``deen_hidden_dims``, ``train_size``, ``seed``,
        ``device``, ``data_root``).
    :returns: the results dictionary (also in ``walk_jump.json``).
    """
    budget = Budget(**budget)
    run, cfg, clf, acc = _setup(out, budget, classifier_epochs, progress)
    sigma, seed = float(sigma), cfg["seed"]
    out, device, x_train = run.out, run.device, run.x_train
    chain_cfg = dict(sigma=sigma, num_steps=int(num_steps), jump_every=int(jump_every), eps_scale=eps_scale,
                     friction=friction, inverse_mass=inverse_mass, energy_particles=int(energy_particles), seed=seed)
    results = {"config": jsonable(dict(cfg, **chain_cfg, classifier_epochs=classifier_epochs, device=str(device))),
               "classifier_test_accuracy": acc, "chains": {}}
    jumps_by_model = {}
    with pyro.settings.context(module_local_params=True):
        for kind in models:
            module, _ = train_model(kind, sigma, cfg, x_train, out, device, progress)
            stage_path = out / "checkpoints" / f"walk_jump_{kind}_sigma{sigma_tag(sigma)}.pt"
            stage = _chains(kind, module, sigma, cfg, chain_cfg, 1, stage_path, device, progress)
            jumps = stage["jumps"][:, 0]
            conf, labels = _classify(clf, jumps, device)
            # drop the jump at step 0: it denoises the random initial point, not a state of the walk
            stats = class_stats(labels[1:], conf[1:], confident_threshold)
            stats["seconds"] = round(float(stage["seconds"]), 1)
            stats["labels"] = labels.tolist()
            results["chains"][kind] = stats
            jumps_by_model[kind] = (jumps, stage["jump_steps"], labels, conf)
            fig = jumps_figure(kind, jumps, stage["jump_steps"], labels, conf, sigma)
            save_figure(fig, out / f"walk_jump_{kind}.png", dpi=110)
    save_figure(classes_figure(jumps_by_model), out / "walk_jump_classes.png", dpi=100)
    return run.finish("walk_jump", results, walk_markdown)


def walk_jump_chains(out="results/empirical_bayes", sigma=1.0, *, num_chains=16, eps_scales=(0.5, 1.0),
                     num_steps=2_000, jump_every=20, friction=0.5, inverse_mass=1.0, energy_particles=8,
                     models=("uvb", "deen"), classifier_epochs=3, confident_threshold=0.9, progress=True, **budget):
    r"""
    Walk-jump with many chains (CLI ``walk-jump --chains C``): for each energy and each step size
    :math:`\delta = \mathrm{eps\_scale}\cdot\sigma`, ``num_chains`` chains run in parallel (one batch),
    each from its own :math:`U(0,1)^{784} + N(0, \sigma^2 I)` draw, with the walk of
    :func:`walk_jump_experiment`. Per chain, from the classifier's labels of its jumps after step 0
    (:func:`class_stats`): classes visited, class changes between consecutive jumps, the fraction of
    confident jumps (largest probability ≥ ``confident_threshold``) and the same counts over confident jumps
    only; and their mean, min and max over chains (:func:`chain_summary`).

    The models and the classifier are those of :func:`walk_jump_experiment` and :func:`uvb_denoise` (or of
    :func:`~.denoising.uvb_vs_deen_matched` with matching ``hidden_dims`` and ``seed``) in the same ``out``.

    Writes ``walk_jump_chains.json``, ``walk_jump_chains.md`` and ``walk_jump_chains_<model>_eps<scale>.png``
    (chains × time); the chains' jumps are cached in ``out/checkpoints``.

    :param budget: the settings of the models, keywords of :class:`~.denoising.Budget`.
    :returns: the results dictionary (also in ``walk_jump_chains.json``).
    """
    budget = Budget(**budget)
    run, cfg, clf, acc = _setup(out, budget, classifier_epochs, progress)
    sigma, seed, num_chains = float(sigma), cfg["seed"], int(num_chains)
    out, device = run.out, run.device
    walk_cfg = dict(sigma=sigma, num_steps=int(num_steps), jump_every=int(jump_every), friction=friction,
                    inverse_mass=inverse_mass, energy_particles=int(energy_particles), seed=seed)
    results = {"config": jsonable(dict(cfg, **walk_cfg, num_chains=num_chains, eps_scales=list(eps_scales),
                                       classifier_epochs=classifier_epochs, device=str(device))),
               "classifier_test_accuracy": acc, "runs": {}}
    with pyro.settings.context(module_local_params=True):
        for kind in models:
            module, _ = train_model(kind, sigma, cfg, run.x_train, out, device, progress)
            for eps_scale in eps_scales:
                name = f"{kind}_eps{sigma_tag(eps_scale)}"
                stage_path = out / "checkpoints" / f"walk_jump_chains_{name}_sigma{sigma_tag(sigma)}.pt"
                stage = _chains(kind, module, sigma, cfg, dict(walk_cfg, eps_scale=float(eps_scale)), num_chains,
                                stage_path, device, progress)
                conf, labels = _classify(clf, stage["jumps"], device)  # (J, C)
                per_chain, summary = chain_summary(labels[1:], conf[1:], confident_threshold)
                results["runs"][name] = {"model": kind, "eps_scale": float(eps_scale), "summary": summary,
                                         "chains": per_chain, "seconds": round(float(stage["seconds"]), 1),
                                         "labels": labels.T.tolist()}
                fig = chains_figure(kind, eps_scale, stage["jumps"], stage["jump_steps"], labels, conf, sigma,
                                    confident_threshold)
                save_figure(fig, out / f"walk_jump_chains_{name}.png", dpi=110)
    return run.finish("walk_jump_chains", results, chains_markdown)
