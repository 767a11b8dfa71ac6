r"""Time SVI training steps of Pyro programs against hand-written PyTorch steps of the same models.

Library rows: the MNIST MLP VAE 784-500-500-50 (softplus), σ-VAE decoder N(sigmoid(out), σ²I), batch 100, with
Trace_ELBO, TraceMeanField_ELBO, IWAE_ELBO (K=5) and DIWAE (IWAE K=5 + salt-and-pepper denoising guide), on the
library's fast path (:class:`~pyro_noisevae.models.FusedVAEObjective`) and on the Pyro programs.

User-written programs (what any model outside the library gets, issue 12): Pyro programs written as a user would,
trained with ``pyro.infer.Trace_ELBO()`` and ``pyro_noisevae.infer.IWAE_ELBO(num_particles=5)`` (default
settings: plate nesting inferred, Pyro's checks on the first call), each next to a hand-written PyTorch twin
(same networks and initial weights, same estimator, plain tensor code):

* ``conv``: a convolutional VAE on 1×28×28 binarized MNIST, plain ``model``/``guide`` functions with
  ``pyro.module``: Conv2d encoder 1→16→32 (4×4, stride 2) → 16-D Gaussian, ConvTranspose2d decoder back to
  Bernoulli logits;
* ``hier``: a two-layer hierarchical VAE as a ``PyroModule``, :math:`p(z_2)\,p(z_1 \mid z_2)\,p(x \mid z_1)`
  with guide :math:`q(z_2 \mid x)\,q(z_1 \mid z_2, x)` (``z2`` 16-D, ``z1`` 32-D, MLPs of width 256,
  Bernoulli likelihood on flattened binarized MNIST).

Before timing, each twin is checked to give the program's loss and gradients under the same seed (same draws).
Every step is an Adam step (lr 1e-3) on the negative bound per data point, batch 100. Each repetition times
``--steps`` steps of every variant back to back (interleaved) after ``--warmup`` untimed steps (steady state);
the tables report medians and the median of the per-repetition ratios (program time / hand-written time).

    python benchmarks/bench_train_step.py                       # CPU, writes benchmarks/results/train_step_cpu.{json,md}
    python benchmarks/bench_train_step.py --device cuda         # writes ..._cuda.{json,md}
    python benchmarks/bench_train_step.py --steps 3 --reps 2 --warmup 1 --out /tmp/bench   # smoke run
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.nn import PyroModule
from torch import nn

from pyro_noisevae.data import load_dataset
from pyro_noisevae.infer import IWAE_ELBO
from pyro_noisevae.models import FusedVAEObjective, VAE
from pyro_noisevae.training import Trainer

LOG2PI = math.log(2 * math.pi)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class HandWritten:
    """Plain PyTorch version of the same VAE step (no Pyro)."""

    def __init__(self, vae, sigma, num_particles=1, analytic_kl=False, iwae=False, corruption_rate=0.0, lr=1e-3):
        self.enc, self.dec = vae.encoder, vae.decoder
        self.sigma, self.K, self.analytic_kl, self.iwae, self.rate = sigma, num_particles, analytic_kl, iwae, corruption_rate
        self.opt = torch.optim.Adam(list(vae.parameters()), lr=lr)

    def loss(self, x):
        x_in = x
        if self.rate > 0:
            flip = torch.rand_like(x) < self.rate
            x_in = torch.where(flip, torch.bernoulli(torch.full_like(x, 0.5)), x)
        loc, scale = self.enc(x_in)
        shape = (self.K,) + loc.shape if self.K > 1 else loc.shape
        eps = torch.randn(shape, dtype=loc.dtype, device=loc.device)
        z = loc + scale * eps
        mu = torch.sigmoid(self.dec(z))
        log_px = (-0.5 * ((x - mu) / self.sigma) ** 2 - math.log(self.sigma) - 0.5 * LOG2PI).sum(-1)
        if self.analytic_kl:
            kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)
            return -(log_px - kl).mean()
        log_pz = (-0.5 * z**2 - 0.5 * LOG2PI).sum(-1)
        log_qz = (-0.5 * eps**2 - scale.log() - 0.5 * LOG2PI).sum(-1)
        log_w = log_px + log_pz - log_qz
        if self.iwae:
            return -(log_w.logsumexp(0) - math.log(self.K)).mean()
        return -log_w.mean()

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x)
        loss.backward()
        self.opt.step()
        return loss.detach()


def _library(vae, objective, data, fused):
    """The library's trainer: with ``fused`` its default fast path (FusedVAEObjective), else the Pyro ELBO."""
    from pyro_noisevae.distributions import SaltAndPepper
    from pyro_noisevae.guides import DenoisingGuide

    model, guide, denoiser = vae.model, vae.guide, None
    if objective == "trace":
        elbo, kw = Trace_ELBO(max_plate_nesting=1), {}
    elif objective == "meanfield":
        elbo, kw = TraceMeanField_ELBO(max_plate_nesting=1), {"objective": "meanfield"}
    elif objective == "iwae5":
        elbo, kw = IWAE_ELBO(num_particles=5, max_plate_nesting=1), {"objective": "iwae", "num_particles": 5}
    elif objective == "diwae5":
        elbo, kw = IWAE_ELBO(num_particles=5, max_plate_nesting=1), {"objective": "iwae", "num_particles": 5}
        guide = denoiser = DenoisingGuide(vae.guide, lambda clean: SaltAndPepper(clean, 0.1))
    else:
        raise ValueError(objective)
    fast = FusedVAEObjective(vae, denoiser=denoiser, validate=False, **kw) if fused else None
    return Trainer(vae, model, guide, elbo, data, batch_size=100, lr=1e-3, seed=0, objective=fast)


def _hand(vae, objective, sigma):
    kw = {
        "trace": {},
        "meanfield": {"analytic_kl": True},
        "iwae5": {"num_particles": 5, "iwae": True},
        "diwae5": {"num_particles": 5, "iwae": True, "corruption_rate": 0.1},
    }[objective]
    return HandWritten(vae, sigma, **kw)


# ----------------------------------------------------------------------------------------------------------
# user-written programs and their hand-written twins
# ----------------------------------------------------------------------------------------------------------

CONV_Z = 16
HIER_Z1, HIER_Z2, HIER_H = 32, 16, 256


def _gaussian(out):
    """Split a head's output into ``(loc, scale)``, ``scale = softplus(.) + 1e-4``."""
    loc, raw = out.chunk(2, -1)
    return loc, F.softplus(raw) + 1e-4


def _log_normal(z, loc, scale):
    """log N(z; loc, scale²) summed over the last dim."""
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG2PI).sum(-1)


class ConvEncoder(nn.Module):
    def __init__(self, z_dim=CONV_Z):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 4, stride=2, padding=1)  # 28 -> 14
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2, padding=1)  # 14 -> 7
        self.head = nn.Linear(32 * 7 * 7, 2 * z_dim)

    def forward(self, x):  # (B, 1, 28, 28) -> loc, scale (B, z_dim)
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        return _gaussian(self.head(h.flatten(1)))


class ConvDecoder(nn.Module):
    def __init__(self, z_dim=CONV_Z):
        super().__init__()
        self.fc = nn.Linear(z_dim, 32 * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)  # 7 -> 14
        self.deconv2 = nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1)  # 14 -> 28

    def forward(self, z):  # (*, z_dim) -> Bernoulli logits (*, 1, 28, 28)
        h = F.relu(self.fc(z)).reshape(-1, 32, 7, 7)
        return self.deconv2(F.relu(self.deconv1(h))).reshape(z.shape[:-1] + (1, 28, 28))


def conv_vae_programs(encoder, decoder, name="conv_vae"):
    """A user's conv VAE as plain Pyro functions registering their networks with ``pyro.module``."""

    def model(x):
        pyro.module(name + "_decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], CONV_Z), x.new_ones(x.shape[0], CONV_Z)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=decoder(z)).to_event(3), obs=x)

    def guide(x):
        pyro.module(name + "_encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


class HierarchicalVAE(PyroModule):
    """A user's two-layer VAE: p(z2) p(z1|z2) p(x|z1), guide q(z2|x) q(z1|z2, x)."""

    def __init__(self, x_dim=784):
        super().__init__()
        self.enc_x = nn.Sequential(nn.Linear(x_dim, HIER_H), nn.Softplus())
        self.q_z2 = nn.Linear(HIER_H, 2 * HIER_Z2)
        self.q_z1 = nn.Sequential(nn.Linear(HIER_H + HIER_Z2, HIER_H), nn.Softplus(), nn.Linear(HIER_H, 2 * HIER_Z1))
        self.p_z1 = nn.Sequential(nn.Linear(HIER_Z2, 128), nn.Softplus(), nn.Linear(128, 2 * HIER_Z1))
        self.p_x = nn.Sequential(nn.Linear(HIER_Z1, HIER_H), nn.Softplus(), nn.Linear(HIER_H, x_dim))

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(x.shape[0], HIER_Z2), x.new_ones(x.shape[0], HIER_Z2)).to_event(1))
            loc1, scale1 = _gaussian(self.p_z1(z2))
            z1 = pyro.sample("z1", dist.Normal(loc1, scale1).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.p_x(z1)).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            h = self.enc_x(x)
            loc2, scale2 = _gaussian(self.q_z2(h))
            z2 = pyro.sample("z2", dist.Normal(loc2, scale2).to_event(1))
            loc1, scale1 = _gaussian(self.q_z1(torch.cat([h.expand(z2.shape[:-1] + h.shape[-1:]), z2], -1)))
            pyro.sample("z1", dist.Normal(loc1, scale1).to_event(1))


class _AdamStep:
    """One Adam step on ``loss_fn(x)`` (the negative bound per data point)."""

    def __init__(self, loss_fn, params, lr=1e-3):
        self.loss_fn, self.opt = loss_fn, torch.optim.Adam(list(params), lr=lr)

    def step(self, x):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(x)
        loss.backward()
        self.opt.step()
        return loss.detach()


def _bound(log_w, iwae, K):
    """Per-point bound from ``log_w`` ``(K, B)``: IWAE log-mean-exp or the average (Trace_ELBO)."""
    return log_w.logsumexp(0) - math.log(K) if iwae else log_w.mean(0)


def _conv_twin_loss(encoder, decoder, iwae, K):
    def loss(x):
        loc, scale = encoder(x)
        eps = torch.randn((K,) + loc.shape, dtype=loc.dtype, device=loc.device)
        z = loc + scale * eps
        log_px = -F.binary_cross_entropy_with_logits(decoder(z), x.expand((K,) + x.shape), reduction="none").sum((-3, -2, -1))
        log_pz = (-0.5 * z**2 - 0.5 * LOG2PI).sum(-1)
        log_qz = (-0.5 * eps**2 - scale.log() - 0.5 * LOG2PI).sum(-1)
        return -_bound(log_px + log_pz - log_qz, iwae, K).mean()

    return loss


def _hier_twin_loss(net, iwae, K):
    def loss(x):
        h = net.enc_x(x)
        loc2, scale2 = _gaussian(net.q_z2(h))
        eps2 = torch.randn((K,) + loc2.shape, dtype=loc2.dtype, device=loc2.device)
        z2 = loc2 + scale2 * eps2
        loc1, scale1 = _gaussian(net.q_z1(torch.cat([h.expand(z2.shape[:-1] + h.shape[-1:]), z2], -1)))
        eps1 = torch.randn(loc1.shape, dtype=loc1.dtype, device=loc1.device)
        z1 = loc1 + scale1 * eps1
        p_loc1, p_scale1 = _gaussian(net.p_z1(z2))
        log_px = -F.binary_cross_entropy_with_logits(net.p_x(z1), x.expand((K,) + x.shape), reduction="none").sum(-1)
        log_p = log_px + _log_normal(z1, p_loc1, p_scale1) + (-0.5 * z2**2 - 0.5 * LOG2PI).sum(-1)
        log_q = (-0.5 * eps2**2 - scale2.log() - 0.5 * LOG2PI).sum(-1) + (-0.5 * eps1**2 - scale1.log() - 0.5 * LOG2PI).sum(-1)
        return -_bound(log_p - log_q, iwae, K).mean()

    return loss


def _user_elbo(objective):
    if objective == "trace":
        return Trace_ELBO(), False, 1
    if objective == "elbo1":  # the same single-sample ELBO as Trace_ELBO, through this library's core
        return IWAE_ELBO(num_particles=1), False, 1
    if objective == "iwae5":
        return IWAE_ELBO(num_particles=5), True, 5
    raise ValueError(f"user-program objectives are 'trace', 'elbo1' and 'iwae5', got {objective!r}")


def _user_steps(program, objective, device, tag):
    """``{"program": step, "hand": step}``: the Pyro program and its hand-written twin, equal initial weights."""
    elbo, iwae, K = _user_elbo(objective)
    if program == "conv":
        nets = [(ConvEncoder().to(device), ConvDecoder().to(device)) for _ in range(2)]
        for a, b in zip(nets[0], nets[1]):
            b.load_state_dict(a.state_dict())
        (enc, dec), (enc_h, dec_h) = nets
        model, guide = conv_vae_programs(enc, dec, name=f"conv_{tag}")
        params = list(enc.parameters()) + list(dec.parameters())
        hand = _AdamStep(_conv_twin_loss(enc_h, dec_h, iwae, K), list(enc_h.parameters()) + list(dec_h.parameters()))
    elif program == "hier":
        net, net_h = HierarchicalVAE().to(device), HierarchicalVAE().to(device)
        net_h.load_state_dict(net.state_dict())
        model, guide, params = net.model, net.guide, net.parameters()
        hand = _AdamStep(_hier_twin_loss(net_h, iwae, K), net_h.parameters())
    else:
        raise ValueError(f"programs are 'conv' and 'hier', got {program!r}")
    pyro_step = _AdamStep(lambda x: elbo.differentiable_loss(model, guide, x) / x.shape[0], params)
    return {"program": pyro_step, "hand": hand}


def _check_same_estimator(steps, x, rtol=1e-4):
    """The twin computes the program's loss and gradients from the same draws (float rounding aside)."""
    results = []
    for s in steps.values():
        pyro.set_rng_seed(123)
        s.opt.zero_grad(set_to_none=True)
        loss = s.loss_fn(x)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for group in s.opt.param_groups for p in group["params"]])
        s.opt.zero_grad(set_to_none=True)
        results.append((loss.detach(), grads))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l2, l1, rtol=rtol, atol=0)
    torch.testing.assert_close(g2, g1, rtol=rtol, atol=rtol * g1.abs().max().item())


def _time(step, batches, device):
    _sync(device)
    t0 = time.perf_counter()
    for x in batches:
        step(x)
    _sync(device)
    return time.perf_counter() - t0


def _measure(steps, batches, warmup, reps, device):
    """Warm up every step function, then time ``reps`` interleaved blocks of ``len(batches)`` steps each."""
    for b in batches[:warmup]:
        for step in steps.values():
            step(b)
    times = {k: [] for k in steps}
    for _ in range(reps):
        for k, step in steps.items():
            times[k].append(_time(step, batches, device))
    return times


def _ratio_stats(times, key, ref, num_steps):
    ratios = [a / b for a, b in zip(times[key], times[ref])]
    return {
        f"{key}_steps_per_s": num_steps / statistics.median(times[key]),
        f"{key}_ratio_median": statistics.median(ratios),
        f"{key}_ratio_min": min(ratios),
        f"{key}_ratio_max": max(ratios),
        f"{key}_overhead_ms_per_step": 1e3 * (statistics.median(times[key]) - statistics.median(times[ref])) / num_steps,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--objectives", nargs="*", default=["trace", "meanfield", "iwae5", "diwae5"],
                   help="library VAE rows (none: skip them)")
    p.add_argument("--programs", nargs="*", default=["conv", "hier"], help="user-written programs (none: skip them)")
    p.add_argument("--program-objectives", nargs="+", default=["trace", "elbo1", "iwae5"])
    p.add_argument("--steps", type=int, default=50, help="steps per timed block")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sigma = 0.2
    data = load_dataset("mnist", split="train", root=args.data_root).data[:10000].to(device)
    batches = [data[i * 100 : (i + 1) * 100] for i in range(args.steps)]
    rows = []
    with pyro.settings.context(module_local_params=True):
        for objective in args.objectives:
            pyro.set_rng_seed(0)
            vaes = [VAE(784, 50, (500, 500), likelihood="normal", sigma=sigma).to(device) for _ in range(3)]
            for v in vaes[1:]:
                v.load_state_dict(vaes[0].state_dict())
            steps = {
                "fused": _library(vaes[0], objective, data, fused=True).step,
                "pyro": _library(vaes[1], objective, data, fused=False).step,
                "hand": _hand(vaes[2], objective, sigma).step,
            }
            times = _measure(steps, batches, args.warmup, args.reps, device)
            row = {"objective": objective}
            for k in ("fused", "pyro"):
                row.update(_ratio_stats(times, k, "hand", args.steps))
            row["hand_steps_per_s"] = args.steps / statistics.median(times["hand"])
            row["seconds"] = times
            rows.append(row)
            print(json.dumps(row))

    # user-written programs on statically binarized MNIST (Bernoulli likelihoods)
    binary = torch.bernoulli(data.cpu(), generator=torch.Generator().manual_seed(0)).to(device)
    flat_batches = [binary[i * 100 : (i + 1) * 100] for i in range(args.steps)]
    image_batches = [b.reshape(-1, 1, 28, 28) for b in flat_batches]
    program_rows = []
    pyro.clear_param_store()
    with pyro.settings.context(module_local_params=True):
        for program in args.programs:
            for objective in args.program_objectives:
                pyro.set_rng_seed(0)
                objs = _user_steps(program, objective, device, tag=objective)
                program_batches = image_batches if program == "conv" else flat_batches
                _check_same_estimator(objs, program_batches[0])
                times = _measure({k: o.step for k, o in objs.items()}, program_batches, args.warmup, args.reps, device)
                row = {"program": program, "objective": objective, **_ratio_stats(times, "program", "hand", args.steps),
                       "hand_steps_per_s": args.steps / statistics.median(times["hand"]), "seconds": times}
                program_rows.append(row)
                print(json.dumps(row))

    info = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "python": platform.python_version(),
        "steps_per_block": args.steps,
        "warmup_steps": args.warmup,
        "reps": args.reps,
        "model": "MLP VAE 784-500-500-50, softplus, NoisyNormal(σ=0.2) decoder, batch 100, Adam lr 1e-3",
        "user_programs": {
            "conv": f"conv VAE on 1x28x28 binarized MNIST: Conv2d 1-16-32 (4x4, stride 2) -> {CONV_Z}-D Gaussian, "
                    "Linear + ConvTranspose2d 32-16-1 -> Bernoulli logits; plain model/guide functions with pyro.module",
            "hier": f"hierarchical VAE (PyroModule) p(z2) p(z1|z2) p(x|z1), guide q(z2|x) q(z1|z2,x), z2 {HIER_Z2}-D, "
                    f"z1 {HIER_Z1}-D, softplus MLPs of width {HIER_H}, Bernoulli on flattened binarized MNIST",
            "objectives": "trace: pyro.infer.Trace_ELBO(); elbo1: pyro_noisevae.infer.IWAE_ELBO(num_particles=1) (the same "
                          "estimator as Trace_ELBO); iwae5: pyro_noisevae.infer.IWAE_ELBO(num_particles=5)",
            "step": "torch.optim.Adam (lr 1e-3) on elbo.differentiable_loss(model, guide, x) / batch, batch 100",
        },
        "command": "python benchmarks/bench_train_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"train_step_{device.type}"
    (out / f"{stem}.json").write_text(
        json.dumps({"machine": info, "results": rows, "user_programs": program_rows}, indent=2) + "\n")
    lines = [
        f"# Training step: Pyro programs vs hand-written PyTorch ({device.type})",
        "",
        f"`{info['command']}`; {args.reps} interleaved repetitions of {args.steps} steps after {args.warmup} warm-up "
        f"steps; torch {info['torch']}, pyro {info['pyro']}, {info['cpu_count']} CPUs ({info['cpu']}), "
        f"{info['torch_threads']} torch threads" + (f", {info['gpu']}" if info["gpu"] else "")
        + f"; 1-min load average at the end {info['load_average_1min_at_end']:.1f}. Ratio = step time of the program "
        "over step time of its hand-written twin, median over repetitions (range: min–max).",
    ]
    if rows:
        lines += [
            "",
            "## The library VAE",
            "",
            f"{info['model']}. The library's trainer runs the fused fast path by default "
            "(`pyro_noisevae.models.FusedVAEObjective`: the same estimator and random draws as the Pyro programs, "
            "tested equal in `tests/models/test_fused.py`); `--no-fast-path` runs the Pyro ELBO on the model/guide "
            "programs.",
            "",
            "| objective | hand-written steps/s | library (fast path) steps/s | ratio (median) | range | overhead ms/step "
            "| library (Pyro programs) steps/s | ratio (median) | range | overhead ms/step |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['objective']} | {r['hand_steps_per_s']:.1f} | "
                + " | ".join(f"{r[k + '_steps_per_s']:.1f} | **{r[k + '_ratio_median']:.3f}** | {r[k + '_ratio_min']:.2f}–"
                             f"{r[k + '_ratio_max']:.2f} | {r[k + '_overhead_ms_per_step']:.2f}" for k in ("fused", "pyro"))
                + " |"
            )
    if program_rows:
        u = info["user_programs"]
        lines += [
            "",
            "## User-written programs",
            "",
            "What any model outside the library gets: Pyro programs trained with "
            f"{u['objectives']} (default settings; IWAE_ELBO runs Pyro's checks on the first call of a (model, guide) "
            "pair, Trace_ELBO on every call), timed in steady state. Each twin computes the same estimator by hand "
            "(same networks and initial weights, plain torch; checked to give the program's loss and gradients under "
            f"the same seed before timing). Step: {u['step']}.",
            "",
            f"- `conv`: {u['conv']}.",
            f"- `hier`: {u['hier']}.",
            "",
            "| program | objective | hand-written steps/s | Pyro program steps/s | ratio (median) | range | overhead ms/step |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in program_rows:
            lines.append(
                f"| {r['program']} | {r['objective']} | {r['hand_steps_per_s']:.1f} | {r['program_steps_per_s']:.1f} | "
                f"**{r['program_ratio_median']:.3f}** | {r['program_ratio_min']:.2f}–{r['program_ratio_max']:.2f} | "
                f"{r['program_overhead_ms_per_step']:.2f} |"
            )
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
