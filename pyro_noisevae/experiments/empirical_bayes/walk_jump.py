"""Experiment (b), ``walk-jump``: one long walk-jump chain on the UVB (and DEEN) energy, classes visited."""

import json
import time

import pyro
import torch

from ...empirical_bayes import walk_jump
from ..common import load_torch, save_figure, save_torch
from .denoising import Budget, ExperimentRun
from .models import jsonable, load_mnist, model_energy, model_meta, sigma_tag, train_classifier, train_model
from .reports import classes_figure, jumps_figure, walk_markdown

__all__ = ["class_stats", "walk_jump_experiment"]


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
        "classes_visited_confident": len(set(confident)),
        "transitions_confident": confident_transitions,
        "mean_confidence": float(confidence.mean()),
        "first_visit_jump": {str(k): labels.index(k) for k in sorted(set(labels))},
    }


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
    cfg = budget.config()
    sigma, seed = float(sigma), cfg["seed"]
    run = ExperimentRun(out, budget)
    out, device, x_train, t_train = run.out, run.device, run.x_train, run.t_train
    x_test, t_test = load_mnist("test", root=budget.data_root)
    clf, acc = train_classifier(out, x_train, t_train, x_test, t_test, classifier_epochs, seed, device, progress)
    chain_cfg = dict(sigma=sigma, num_steps=int(num_steps), jump_every=int(jump_every), eps_scale=eps_scale,
                     friction=friction, inverse_mass=inverse_mass, energy_particles=int(energy_particles), seed=seed)
    results = {"config": jsonable(dict(cfg, **chain_cfg, classifier_epochs=classifier_epochs, device=str(device))),
               "classifier_test_accuracy": acc, "chains": {}}
    jumps_by_model = {}
    with pyro.settings.context(module_local_params=True):
        for kind in models:
            module, _ = train_model(kind, sigma, cfg, x_train, out, device, progress)
            stage_path = out / "checkpoints" / f"walk_jump_{kind}_sigma{sigma_tag(sigma)}.pt"
            key = json.dumps(jsonable(dict(chain_cfg, model=model_meta(kind, sigma, cfg), epochs=cfg["epochs"])))
            stage = load_torch(stage_path) if stage_path.is_file() else None
            if stage is None or stage["key"] != key:
                energy = model_energy(kind, module, energy_particles)
                gen = torch.Generator(device=device).manual_seed(seed)
                torch.manual_seed(seed)
                t0 = time.time()
                res = walk_jump(energy, sigma, int(num_steps), num_chains=1, jump_every=int(jump_every),
                                eps_scale=eps_scale, friction=friction, inverse_mass=inverse_mass, save_every=0,
                                generator=gen, progress=progress)
                stage = {"key": key, "jumps": res.jumps[:, 0], "jump_steps": res.jump_steps,
                         "seconds": time.time() - t0}
                save_torch(stage_path, stage)
            jumps = stage["jumps"]
            with torch.no_grad():
                probs = clf(jumps.to(device)).softmax(-1).cpu()
            conf, labels = probs.max(-1)
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
