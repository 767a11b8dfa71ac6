"""Run-folder training: :func:`train` writes a run folder (resumable, owned by one process), :func:`load_run` reads it.

The run folder holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (written atomically every epoch and on
SIGINT/SIGTERM) and PNGs (reconstructions of clean and noisy test images, prior samples, loss curves).
``resume=True`` continues an interrupted run; on CPU the resumed run is bit-for-bit the uninterrupted one,
because the mini-batch order of every epoch is derived from ``(seed, epoch)`` and the torch RNG state is
checkpointed.
"""

import contextlib
import dataclasses
import signal
import sys
import time
from pathlib import Path

import pyro
import torch

from ..infer.fit_loop import FitResult
from ..data import load_dataset
from ..models import check_data
from .config import RUN_CONTROL, TrainConfig, config_differences
from .distributed import init_distributed
from .factories import StepSchedule, build_fused_objective, build_model, build_programs, kl_warmup
from .figures import write_figures
from .run_folder import BEST, CHECKPOINT, CheckpointError, RunFolder, load_checkpoint
from .trainer import Trainer, evaluate_elbo

__all__ = ["build_trainer", "epochs_without_improvement", "eval_bound", "load_run", "resumed_config", "train"]

#: ``load_run`` weight choices
WEIGHTS = ("final", "last", "best")


def build_trainer(vae, cfg, data):
    """
    The :class:`~pyro_noisevae.training.Trainer` of ``cfg`` for ``vae`` on ``data``: the programs of
    :func:`~pyro_noisevae.training.build_programs` (and the fused objective when ``cfg.fast_path``), with β
    warmed up over ``cfg.kl_warmup_epochs`` epochs (:func:`~pyro_noisevae.training.kl_warmup`, evaluated at the
    trainer's step).
    """
    steps_per_epoch = -(-data.shape[0] // cfg.batch_size)
    if cfg.max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps)
    beta = cfg.beta
    if cfg.kl_warmup_epochs > 0:
        beta = StepSchedule(kl_warmup(cfg.beta, cfg.kl_warmup_epochs * steps_per_epoch))
    model, guide, elbo = build_programs(vae, cfg, beta=beta)
    fused = build_fused_objective(vae, cfg, beta=beta) if cfg.fast_path else None
    return Trainer(vae, model, guide, elbo, data, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                   binarize=cfg.binarize, max_steps=cfg.max_steps, objective=fused,
                   beta=beta if isinstance(beta, StepSchedule) else None, log_every=cfg.log_every)


def resumed_config(cfg, ckpt, where="the run folder"):
    """
    The configuration a resume of ``ckpt`` runs with: the saved one, with the run-control settings
    (:data:`~pyro_noisevae.training.RUN_CONTROL`: epochs, device, data root, ...) taken from ``cfg``.

    :raises ValueError: if ``cfg`` differs from the saved configuration in another setting (the message lists
        them), or asks for fewer epochs than the run has finished.
    :raises CheckpointError: if the checkpoint's configuration is not a valid one.
    """
    try:
        saved = TrainConfig.from_dict(ckpt["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"the checkpoint in {where} holds an invalid configuration ({e})") from None
    diffs = config_differences(saved, cfg)
    if diffs:
        what = "; ".join(f"{k}: {a!r} in the run, {b!r} asked" for k, a, b in diffs)
        raise ValueError(f"{where} holds a run with other settings ({what}); a resumed run may change only "
                         f"{', '.join(RUN_CONTROL)}")
    done = int(ckpt["trainer"]["epoch"])
    if cfg.epochs < done:
        raise ValueError(f"the run in {where} has already trained {done} epochs; ask for {done} or more")
    return dataclasses.replace(saved, **{k: getattr(cfg, k) for k in RUN_CONTROL})


def train(cfg, resume=False, progress=True, overwrite=False):
    """
    Train the VAE described by ``cfg`` (a :class:`~pyro_noisevae.training.TrainConfig`) and write its run
    folder ``cfg.out``, owned by this process while it trains (:class:`~pyro_noisevae.training.RunFolder`).

    :param bool resume: continue from ``cfg.out/checkpoint.pt`` up to ``cfg.epochs``; ``cfg`` must equal the
        saved configuration except in run-control settings (:func:`resumed_config`).
    :param bool overwrite: start afresh even if ``cfg.out`` holds a previous run (its files are removed first).
    :returns: ``(vae, history)``; ``history`` is the list of metric records also written to ``metrics.jsonl``.
        With ``cfg.patience`` (early stopping), ``vae`` holds the weights of the best validation epoch.
    :raises CheckpointError: when resuming without a readable checkpoint that fits its configuration.
    :raises FileExistsError: when ``cfg.out`` already holds a checkpoint and neither flag is set.
    :raises RunFolderError: when another process owns ``cfg.out``, or it cannot be written.
    :raises ValueError: on a configuration that cannot run (e.g. ``device="cuda"`` without a GPU, data outside
        the likelihood's support).
    :raises SystemExit: ``128 + signum`` after SIGINT/SIGTERM, once the checkpoint is written.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {cfg.device} was requested but torch sees {torch.cuda.device_count()} CUDA device(s)")
    ctx = init_distributed(cfg.device) if cfg.distributed else None
    main = ctx is None or ctx.is_main  # only rank 0 writes files and prints
    try:
        with RunFolder(cfg.out) if main else contextlib.nullcontext() as folder:
            return _train(cfg, folder, ctx, resume=resume, overwrite=overwrite, progress=progress and main)
    finally:
        if ctx is not None:
            ctx.close()


def _train(cfg, folder, ctx, *, resume, overwrite, progress):
    out, main = Path(cfg.out), folder is not None
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out / CHECKPOINT)
        cfg = resumed_config(cfg, ckpt, where=str(out))
    elif (out / CHECKPOINT).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                              "or choose another --out")
    if main and not resume:
        folder.clear()
    train_data, test_data, image_shape = _load_data(cfg)
    device = ctx.device if ctx is not None else torch.device(cfg.device)
    train_data, test_data = train_data.to(device), test_data.to(device)
    pyro.set_rng_seed(cfg.seed)
    with pyro.settings.context(module_local_params=True):
        vae = build_model(cfg, train_data.shape[1], image_shape).to(device)
        trainer = build_trainer(vae, cfg, train_data)
        history = []
        if ckpt is not None:
            _restore(trainer, ckpt, out)
            history = list(ckpt["history"])
        if ctx is not None:
            trainer.enable_distributed(ctx)
            # each rank draws its own latent noise (rank 0's RNG state is what a checkpoint holds)
            torch.manual_seed(cfg.seed + 1_000_003 * ctx.rank + trainer.global_step)
        if main:
            folder.write_json("config.json", cfg.to_dict())
        if ckpt is None:  # fail early on bad data, before any training
            check_data(train_data, name="training data")
            check_data(test_data, name="evaluation data")
            vae.likelihood.check_data(train_data if cfg.binarize != "dynamic" else torch.bernoulli(train_data[:1]))
            vae.likelihood.check_data(test_data)

        data_shape = [train_data.shape[1], *image_shape]
        beta_at = kl_warmup(cfg.beta, cfg.kl_warmup_epochs * trainer.steps_per_epoch())
        clock = {"time": time.perf_counter(), "step": trainer.global_step}

        def end_of_epoch(loop, mean):
            if main:
                metrics = evaluate_elbo(vae, test_data, seed=cfg.seed)
                elapsed = time.perf_counter() - clock["time"]
                record = {"kind": "eval", "epoch": loop.epoch, "step": loop.global_step, "train_loss": mean,
                          "test_elbo": metrics["elbo"], "test_recon": metrics["recon"], "test_kl": metrics["kl"],
                          "active_units": metrics["active_units"], "beta": float(beta_at(loop.global_step)),
                          "steps_per_sec": (loop.global_step - clock["step"]) / max(elapsed, 1e-9)}
                if cfg.patience is not None:
                    K = _bound_particles(cfg)
                    bound = metrics["elbo"] if K == 1 else eval_bound(vae, test_data, K, seed=cfg.seed)
                    best = _best_eval(history)
                    record.update(eval_bound=bound, eval_bound_k=K)
                    if best is None or bound > best["eval_bound"]:
                        folder.save_best(cfg.to_dict(), data_shape, vae.state_dict(), record)
                history.append(record)
                folder.save_checkpoint(cfg.to_dict(), data_shape, trainer.state_dict(), history)
                if progress:
                    print(f"epoch {loop.epoch}/{cfg.epochs}: train loss {mean:.2f}  test ELBO {metrics['elbo']:.2f} "
                          f"(recon {metrics['recon']:.2f}, KL {metrics['kl']:.2f})  "
                          f"{record['steps_per_sec']:.1f} steps/s", file=sys.stderr)
            clock.update(time=time.perf_counter(), step=loop.global_step)

        def no_improvement(loop):
            stale = epochs_without_improvement(history)
            if stale is None or stale < cfg.patience:
                return None
            drops = sum(h.get("kind") == "lr_drop" for h in history)
            if drops < cfg.lr_drops:  # a plateau: divide the learning rate by 10 and go on
                for group in trainer.optim.param_groups:
                    group["lr"] *= 0.1
                lr = trainer.optim.param_groups[0]["lr"]
                history.append({"kind": "lr_drop", "epoch": loop.epoch, "step": loop.global_step, "lr": lr})
                if main:
                    folder.save_checkpoint(cfg.to_dict(), data_shape, trainer.state_dict(), history)
                    if progress:
                        print(f"validation plateau for {stale} epochs: learning rate divided by 10, now {lr:g} "
                              f"(drop {drops + 1} of {cfg.lr_drops})", file=sys.stderr)
                return None
            return f"early stop: no improvement of the validation bound for {stale} epochs"

        loop = trainer.loop
        loop.epochs, loop.progress, loop.desc = cfg.epochs, progress, "epoch"
        loop.on_log = lambda record: history.append({"kind": "train", **record})
        loop.on_epoch_end = end_of_epoch
        loop.stop = no_improvement if cfg.patience is not None else None
        t_start = time.perf_counter()
        already = loop.stop(loop) if loop.stop is not None else None  # a resumed run that had already stopped
        try:
            result = FitResult(stopped=already) if already else loop.run()
        except FloatingPointError as e:
            raise FloatingPointError(f"{e} and sigma (a very small sigma makes the reconstruction term huge)") from None
        if main and result.stopped and result.stopped.startswith("early stop") and not already:
            best = _best_eval(history)
            history.append({"kind": "stop", "epoch": loop.epoch, "step": loop.global_step, "reason": result.stopped,
                            "best_epoch": best["epoch"], "best_eval_bound": best["eval_bound"]})
            folder.save_checkpoint(cfg.to_dict(), data_shape, trainer.state_dict(), history)
            if progress:
                print(f"{result.stopped}; best epoch {best['epoch']} (validation bound {best['eval_bound']:.2f}), "
                      f"its weights are in {out / BEST}", file=sys.stderr)
        if result.interrupted:
            signum = result.signum or signal.SIGTERM  # another rank may have received it
            if main:
                folder.save_checkpoint(cfg.to_dict(), data_shape, trainer.state_dict(), history)
                print(f"\n{signal.Signals(signum).name} received: checkpoint saved at step {trainer.global_step} in "
                      f"{out}; continue with --resume", file=sys.stderr)
            raise SystemExit(128 + signum)
        if cfg.patience is not None and main and (out / BEST).is_file():
            # the run delivers its best epoch (after every checkpoint of the last epoch is written)
            vae.load_state_dict(load_checkpoint(out / BEST, map_location=device)["trainer"]["vae"])
        if main:
            write_figures(out, vae, test_data, image_shape, history, cfg)
            if progress:
                print(f"run folder: {out}  ({time.perf_counter() - t_start:.1f}s)", file=sys.stderr)
    return vae, history


def _restore(trainer, ckpt, path):
    """Load a checkpoint's trainer state; a state that does not fit the model its config builds is a CheckpointError."""
    x_dim = trainer.data.shape[1]
    if int(ckpt["data_shape"][0]) != x_dim:
        raise CheckpointError(f"the checkpoint in {path} was trained on data of dimension {ckpt['data_shape'][0]}, "
                              f"the data now loaded has dimension {x_dim}")
    state = ckpt["trainer"]
    groups = state["optim"]["param_groups"]
    if len(groups) == len(trainer.optim.param_groups) + 1 and not groups[-1]["params"]:
        # checkpoints written before the fit loop held an empty extra group for a guide module's own parameters
        state = {**state, "optim": {**state["optim"], "param_groups": groups[:-1]}}
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"the weights in the checkpoint in {path} do not fit the model of its own config: "
                              f"{' '.join(str(e).split())[:300]}") from None


def load_run(out, map_location="cpu", weights="final"):
    """
    Rebuild the trained :class:`~pyro_noisevae.models.VAE` of a run folder: ``(vae, config, history)``.

    :param str weights: ``"last"``: the weights of the last epoch trained (``checkpoint.pt``); ``"best"``: those of
        the epoch with the best validation bound (``best.pt``, written by runs with ``patience``); ``"final"``:
        the weights the run delivers, ``"best"`` for a run with early stopping and ``"last"`` otherwise.
    :raises CheckpointError: if the checkpoint is missing, unreadable, or its weights do not fit its config.
    :raises ValueError: on an unknown ``weights``.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    ckpt = load_checkpoint(Path(out) / CHECKPOINT, map_location=map_location)
    try:
        cfg = TrainConfig.from_dict(ckpt["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"the checkpoint in {out} holds an invalid configuration ({e})") from None
    if weights == "best" or (weights == "final" and cfg.patience is not None):
        if not (Path(out) / BEST).is_file():
            raise CheckpointError(f"{out} has no {BEST}: that file is written by runs trained with early stopping "
                                  "(patience) after their first epoch; load weights='last'")
        history = ckpt["history"]
        ckpt = {**load_checkpoint(Path(out) / BEST, map_location=map_location), "history": history}
    x_dim, *image_shape = ckpt["data_shape"]
    with pyro.settings.context(module_local_params=True):
        vae = build_model(cfg, x_dim, tuple(image_shape))
        try:
            vae.load_state_dict(ckpt["trainer"]["vae"])
        except RuntimeError as e:
            raise CheckpointError(f"the weights in the checkpoint in {out} do not fit the model of its own config: "
                                  f"{' '.join(str(e).split())[:300]}") from None
    return vae, cfg, ckpt["history"]


def _bound_particles(cfg):
    return cfg.num_particles if cfg.objective == "iwae" else 1


def eval_bound(vae, data, num_particles, seed=0, batch_size=500):
    r"""
    The IWAE-K bound :math:`\mathcal L_K(x) = E\big[\log \frac1K \sum_k p(x, z_k) / q(z_k \mid x)\big]` of ``vae``,
    averaged over the rows of ``data`` ``(N, D)``, from one group of ``K`` draws per point
    (:func:`~pyro_noisevae.evaluation.iwae_bound` with one repeat). The draws come from a generator seeded with
    ``seed``, so the global random state is untouched and the same draws are reused every epoch: successive
    epochs are compared with common random numbers.
    """
    from ..evaluation import iwae_bound

    devices = [data.device] if data.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        bound, _ = iwae_bound(vae.model, vae.guide, data, num_particles=num_particles, num_repeats=1,
                              batch_size=batch_size, chunk_size=num_particles, progress=False)
    return float(bound.mean())


def _best_eval(history):
    evals = [h for h in history if h.get("kind") == "eval" and "eval_bound" in h]
    return max(evals, key=lambda h: h["eval_bound"]) if evals else None


def epochs_without_improvement(history):
    """
    Epochs since the best validation bound in a run's ``history`` (its ``eval`` records with ``eval_bound``), or
    since its last learning-rate drop (``lr_drop`` record) if that came later; the first best counts when two are
    equal. ``None`` when no epoch has been evaluated.
    """
    evals = [h for h in history if h.get("kind") == "eval" and "eval_bound" in h]
    if not evals:
        return None
    since = _best_eval(evals)["epoch"]
    drops = [h["epoch"] for h in history if h.get("kind") == "lr_drop"]
    return evals[-1]["epoch"] - max([since, *drops])


def _subset(data, size, seed):
    if size is None or size >= data.shape[0]:
        return data
    gen = torch.Generator().manual_seed(seed)
    return data[torch.randperm(data.shape[0], generator=gen)[:size]]


def _load_data(cfg):
    binarize = "threshold" if cfg.binarize == "threshold" else None
    train = load_dataset(cfg.dataset, split=cfg.train_split, root=cfg.data_root, binarize=binarize)
    test = load_dataset(cfg.dataset, split=cfg.eval_split, root=cfg.data_root,
                        binarize="dynamic" if cfg.binarize == "dynamic" else binarize, seed=cfg.seed + 1)
    image_shape = tuple(train.image_shape)
    return _subset(train.data, cfg.train_size, cfg.seed), _subset(test.data, cfg.eval_size, cfg.seed + 2), image_shape
