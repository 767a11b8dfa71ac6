"""Data-parallel training on torch.distributed: 2 CPU processes (gloo) launched by torchrun."""

import os
import subprocess
import sys
import textwrap

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_noisevae.models import VAE
from pyro_noisevae.training.distributed import DistributedSetupError, init_distributed, shard

N, B, D, SEED = 64, 8, 10, 7

WORKER = textwrap.dedent(
    """
    import sys
    import pyro, torch
    from pyro.infer import Trace_ELBO
    from pyro_noisevae.models import FusedVAEObjective, VAE
    from pyro_noisevae.training import Trainer
    from pyro_noisevae.training.distributed import init_distributed

    N, B, D, SEED = {N}, {B}, {D}, {SEED}
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    data = torch.rand(N, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pyro.settings.context(module_local_params=True):
        torch.manual_seed(ctx.rank + 100)  # different initial weights per rank: DDP must broadcast rank 0's
        vae = VAE(x_dim=D, z_dim=3, hidden_dims=(16,), likelihood="normal", sigma=0.3).double()
        # the fast path: same estimator and draws as Trace_ELBO
        fused = FusedVAEObjective(vae, validate=False) if sys.argv[2] == "fused" else None
        trainer = Trainer(vae, vae.model, vae.guide, Trace_ELBO(max_plate_nesting=1), data, batch_size=B, lr=1e-2,
                          objective=fused)
        trainer.enable_distributed(ctx)
        initial = torch.cat([p.detach().flatten() for p in vae.parameters()])
        pyro.set_rng_seed(SEED + ctx.rank)
        loss = trainer.step(data[:B])
    if ctx.is_main:
        torch.save({{"initial": initial, "final": torch.cat([p.detach().flatten() for p in vae.parameters()]),
                    "loss": loss}}, sys.argv[1])
    ctx.close()
    """
).format(N=N, B=B, D=D, SEED=SEED)


def _torchrun(args, cwd, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("path", ["pyro", "fused"])
def test_two_process_step_equals_single_process_step_on_concatenated_batch(tmp_path, path):
    (tmp_path / "worker.py").write_text(WORKER)
    result = _torchrun(["worker.py", str(tmp_path / "out.pt"), path], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=True)

    # single process: rank 0's initial weights, the global batch of B rows, and the latent noise of each
    # half drawn as each rank drew it (seed SEED + rank); DDP averages the two shard gradients, which is the
    # gradient of the mean over the concatenated batch
    data = torch.rand(N, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pyro.settings.context(module_local_params=True):
        torch.manual_seed(100)
        vae = VAE(x_dim=D, z_dim=3, hidden_dims=(16,), likelihood="normal", sigma=0.3).double()
        initial = torch.cat([p.detach().flatten() for p in vae.parameters()])
        torch.testing.assert_close(initial, got["initial"], rtol=0, atol=0)
        opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
        x = data[:B]
        total = 0.0
        for rank in range(2):
            pyro.set_rng_seed(SEED + rank)
            part = shard(x, rank, 2)
            total = total + Trace_ELBO(max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, part, num_data=N) / N
        (total / 2).backward()
        opt.step()
    final = torch.cat([p.detach().flatten() for p in vae.parameters()])
    assert (final - initial).abs().max() > 1e-4  # the step moved the parameters
    torch.testing.assert_close(got["final"], final, rtol=1e-10, atol=1e-12)


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
