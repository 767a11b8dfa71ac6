"""Data-parallel training on torch.distributed: 2 CPU processes (gloo) launched by torchrun."""

import os
import signal
import subprocess
import sys
import textwrap

import pyro
import pytest
import torch

from pyro_noisevae.training import TrainConfig, build_model, build_programs, build_trainer, epoch_order, load_checkpoint
from pyro_noisevae.training.distributed import (
    STOP_CHECK_EVERY,
    DistributedContext,
    DistributedSetupError,
    init_distributed,
    shard,
)
from pyro_noisevae.training.runs import _load_data

N, B, D, SEED = 24, 8, 10, 7
#: IWAE-3 with DReG gradients and a Gaussian denoising guide (2 corruptions per point): the estimator with the
#: most machinery per shard (particles, corruption plate, stop-gradient surrogate)
IWAE_DREG_DVAE = dict(likelihood="normal", sigma=0.3, z_dim=3, hidden_dims=(16,), objective="iwae", num_particles=3,
                      gradient_estimator="dreg", corruption="gaussian", corruption_level=0.2, num_corruptions=2,
                      batch_size=B, lr=1e-2, seed=SEED)
#: the run folder resumed under DDP: 40 MNIST images, batches of 8 (5 steps per epoch)
RESUMED = dict(dataset="mnist", train_split="train", train_size=40, eval_size=10, z_dim=2, hidden_dims=(8,),
               batch_size=8, likelihood="normal", sigma=0.3, lr=1e-2, seed=SEED, log_every=1, fast_path=False,
               distributed=True)

WORKER = textwrap.dedent(
    """
    import dataclasses, os, shutil, signal, sys
    from pathlib import Path
    import pyro, torch
    from pyro_noisevae.training import TrainConfig, build_model, build_trainer, train
    from pyro_noisevae.training.distributed import init_distributed

    N, B, D, SEED = {N}, {B}, {D}, {SEED}
    OUT, DATA_ROOT = Path(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    rank = ctx.rank
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])
    data = torch.rand(N, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = {{}}

    # 1. one epoch of N / B = 3 steps, IWAE + DReG + denoising guide, on the Pyro path and on the fused path
    for path in ("pyro", "fused"):
        cfg = TrainConfig(**{IWAE_DREG_DVAE}, fast_path=path == "fused")
        with pyro.settings.context(module_local_params=True):
            torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
            vae = build_model(cfg, D).double()
            trainer = build_trainer(vae, cfg, data)
            trainer.enable_distributed(ctx)
            pyro.set_rng_seed(SEED + rank)
            result = trainer.loop.run()
        res[path] = dict(final=flat(vae), steps=trainer.global_step, losses=result.losses)

    # 2. rank 1 alone receives SIGINT after its 3rd step: both ranks must leave at the same agreement step
    cfg = TrainConfig(likelihood="normal", sigma=0.3, z_dim=2, hidden_dims=(8,), batch_size=2, lr=1e-2, seed=SEED)
    with pyro.settings.context(module_local_params=True):
        vae = build_model(cfg, D).double()
        trainer = build_trainer(vae, cfg, data)  # 12 steps per epoch
        trainer.enable_distributed(ctx)
        trainer.loop.log_every = 1
        trainer.loop.on_log = lambda rec: rank == 1 and rec["step"] == 3 and os.kill(os.getpid(), signal.SIGINT)
        result = trainer.loop.run()
    res["stop"] = dict(step=trainer.global_step, stopped=result.stopped, signum=result.signum, final=flat(vae))

    # 3. train() one epoch into a run folder, then resume it to 2 epochs, under DDP
    cfg = TrainConfig(**{RESUMED}, data_root=DATA_ROOT, epochs=1, out=str(OUT / "run"))
    train(cfg, progress=False)
    ctx.barrier()
    if ctx.is_main:
        shutil.copy(OUT / "run" / "checkpoint.pt", OUT / "after_epoch_1.pt")
    ctx.barrier()
    vae, history = train(dataclasses.replace(cfg, epochs=2), resume=True, progress=False)
    res["resume"] = dict(final=flat(vae), steps=history[-1]["step"])
    torch.save(res, OUT / f"rank{{rank}}.pt")
    ctx.close()
    """
).format(N=N, B=B, D=D, SEED=SEED, IWAE_DREG_DVAE=IWAE_DREG_DVAE, RESUMED=RESUMED)


def _torchrun(args, cwd, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory, data_root):
    """One torchrun launch of 2 gloo processes running every scenario of WORKER; each rank's results."""
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "worker.py").write_text(WORKER)
    result = _torchrun(["worker.py", str(tmp), str(data_root)], cwd=tmp, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _concatenated_batch_steps(model, guide, elbo, params, optim, batches, rng_states, num_data, world=2):
    """
    The single-process reference of DDP: each step the mean over ranks of the loss per data point of the rank's
    shard, its latent noise drawn from that rank's RNG stream (``rng_states``, carried from step to step), with
    one backward pass and one optimizer step on the sum (the gradient DDP's average of shard gradients equals).
    """
    for x in batches:
        optim.zero_grad()
        total = 0.0
        for rank in range(world):
            torch.set_rng_state(rng_states[rank])
            total = total + elbo.differentiable_loss(model, guide, shard(x, rank, world), num_data=num_data) / num_data
            rng_states[rank] = torch.get_rng_state()
        (total / world).backward()
        optim.step()
    return _flat(params)


@pytest.mark.parametrize("path", ["pyro", "fused"])
def test_multi_step_iwae_dreg_denoising_ddp_equals_single_process_on_concatenated_batches(ddp_runs, path):
    _, ranks = ddp_runs
    cfg = TrainConfig(**IWAE_DREG_DVAE)
    data = torch.rand(N, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pyro.settings.context(module_local_params=True):
        torch.manual_seed(100)  # rank 0's initial weights, which DDP broadcasts
        vae = build_model(cfg, D).double()
        initial = _flat(vae)
        model, guide, elbo = build_programs(vae, cfg)  # the Pyro programs, for the fused path too
        order = epoch_order(SEED, 0, N)
        batches = [data[order[i * B : (i + 1) * B]] for i in range(N // B)]
        rng = [torch.manual_seed(SEED + r).get_state() for r in range(2)]
        final = _concatenated_batch_steps(model, guide, elbo, vae, torch.optim.Adam(vae.parameters(), lr=cfg.lr),
                                          batches, rng, N)
    assert N // B == 3 and (final - initial).abs().max() > 1e-3  # three steps moved the parameters
    for got in ranks:  # both ranks hold the single-process parameters
        assert got[path]["steps"] == 3
        torch.testing.assert_close(got[path]["final"], final, rtol=1e-10, atol=1e-12)


def test_one_interrupted_rank_stops_both_at_the_same_agreement_step(ddp_runs):
    _, (r0, r1) = ddp_runs
    # rank 1 got SIGINT after step 3; the flag is all-reduced every STOP_CHECK_EVERY steps, so both ranks take
    # steps 4..STOP_CHECK_EVERY-1 together and leave before step STOP_CHECK_EVERY (12 steps in the epoch)
    assert r0["stop"]["step"] == r1["stop"]["step"] == STOP_CHECK_EVERY < 12
    assert r0["stop"]["stopped"] == r1["stop"]["stopped"] == "interrupted"
    assert r1["stop"]["signum"] == signal.SIGINT and r0["stop"]["signum"] is None  # rank 0 stopped because rank 1 asked
    torch.testing.assert_close(r0["stop"]["final"], r1["stop"]["final"], rtol=0, atol=0)


def test_resume_under_ddp_continues_the_checkpoint_on_both_ranks(ddp_runs, data_root):
    tmp, ranks = ddp_runs
    ckpt = load_checkpoint(tmp / "after_epoch_1.pt")
    cfg = TrainConfig.from_dict(ckpt["config"])
    assert ckpt["trainer"]["global_step"] == 5 and cfg.epochs == 1 and not cfg.fast_path
    train_data = _load_data(cfg)[0]
    num_data = train_data.shape[0]
    # the reference: epoch 2 in one process from the checkpoint's parameters and Adam state, the batches of
    # epoch_order(seed, 1), each rank's latent noise from the stream train() seeds it with on resume
    with pyro.settings.context(module_local_params=True):
        vae = build_model(cfg, train_data.shape[1], (28, 28))
        vae.load_state_dict(ckpt["trainer"]["vae"])
        at_checkpoint = _flat(vae)
        model, guide, elbo = build_programs(vae, cfg)
        optim = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
        optim.load_state_dict(ckpt["trainer"]["optim"])
        order = epoch_order(cfg.seed, 1, num_data)
        batches = [train_data[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]] for i in range(5)]
        rng = [torch.manual_seed(cfg.seed + 1_000_003 * r + 5).get_state() for r in range(2)]
        final = _concatenated_batch_steps(model, guide, elbo, vae, optim, batches, rng, num_data)
    assert (final - at_checkpoint).abs().max() > 1e-3
    for got in ranks:
        assert got["resume"]["steps"] == 10
        # float32 model: the shard gradients are summed in another order than autograd sums them
        torch.testing.assert_close(got["resume"]["final"], final, rtol=1e-5, atol=1e-6)
    saved = load_checkpoint(tmp / "run" / "checkpoint.pt")
    torch.testing.assert_close(_flat_state(saved["trainer"]["vae"], vae), ranks[0]["resume"]["final"], rtol=0, atol=0)


def _flat_state(state, module):
    return torch.cat([state[name].flatten() for name, _ in module.named_parameters()])


def test_cli_trains_under_torchrun(tmp_path, data_root):
    out = tmp_path / "run"
    result = _torchrun(
        ["-m", "pyro_noisevae", "train", "--distributed", "--train-split", "train", "--train-size", "400",
         "--eval-size", "100", "--z-dim", "4", "--hidden-dims", "32", "-b", "40", "-n", "1", "--max-steps", "4",
         "--no-progress", "--out", str(out)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "checkpoint.pt").exists() and (out / "reconstructions.png").exists()


def test_shard_splits_rows_and_rejects_uneven_batches():
    x = torch.arange(12.0).reshape(6, 2)
    assert torch.equal(torch.cat([shard(x, r, 3) for r in range(3)]), x)
    with pytest.raises(ValueError, match="divisible"):
        shard(x, 0, 4)


def test_distributed_flag_without_torchrun_is_a_clear_error(tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DistributedSetupError, match="torchrun"):
        init_distributed("cpu")


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused_not_truncated():
    def trainer(n, batch_size):
        cfg = TrainConfig(likelihood="normal", sigma=0.3, z_dim=2, hidden_dims=(4,), batch_size=batch_size)
        return build_trainer(build_model(cfg, D), cfg, torch.rand(n, D))

    two = DistributedContext(rank=0, world_size=2)
    # refused before any step (and before DDP is set up): the batch size, or the last batch of the epoch
    with pytest.raises(ValueError, match=r"^the batch size is 5 rows, not divisible .* \(2\); choose a --batch-size"):
        trainer(20, 5).enable_distributed(two)
    with pytest.raises(ValueError, match=r"^the last batch of each epoch \(21 % 8\) is 5 rows.*multiples of 2$"):
        trainer(21, 8).enable_distributed(two)
    # a step on a hand-fed uneven global batch is refused too, where it used to train on its first 4 rows
    t = trainer(20, 4)
    seen = []
    t.dist, t._ddp = two, lambda x, step: seen.append(x) or t.objective(x, step)
    t.step(t.data[:4])
    assert torch.equal(seen[0], t.data[:2])  # rank 0's shard of an even batch
    with pytest.raises(ValueError, match=r"global batch \(5 rows\) must be divisible .* multiples of 2"):
        t.step(t.data[:5])
    assert len(seen) == 1
