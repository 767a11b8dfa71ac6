"""Where the Pyro programs' training step spends the time that a hand-written (or the fused) step does not.

Profiles ``--steps`` training steps of the MNIST VAE 784-500-500-50 (σ-VAE decoder, batch 100) on the Pyro path
(``Trainer`` with ``Trace_ELBO`` or ``IWAE_ELBO(K=5)`` on ``vae.model``/``vae.guide``) with :mod:`cProfile`, and
groups the self time of every function by where it lives: torch tensor kernels and autograd, Pyro's effect
handlers and traces, distribution objects (construction, validation, log-densities), the library's own code,
and the rest. The fused path (``pyro_noisevae.models.FusedVAEObjective``) runs the same tensor kernels without
the other groups.

    python benchmarks/profile_pyro_step.py                 # writes benchmarks/results/pyro_step_profile_cpu.{json,md}
"""

import argparse
import cProfile
import json
import platform
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO

from pyro_noisevae.data import load_dataset
from pyro_noisevae.infer import IWAE_ELBO
from pyro_noisevae.models import FusedVAEObjective, VAE
from pyro_noisevae.training import Trainer

GROUPS = [
    ("pyro: effect handlers, traces, plates, site checks", ("/pyro/poutine/", "/pyro/primitives.py", "/pyro/util.py",
                                                           "/pyro/infer/util.py", "/pyro/infer/elbo.py",
                                                           "/pyro/infer/trace_elbo.py", "/pyro/infer/enum.py",
                                                           "/pyro/nn/module.py", "/pyro/settings.py", "/pyro/ops/")),
    ("distribution objects: construction, validation, broadcasting", ("/torch/distributions/", "/pyro/distributions/",
                                                                      "pyro_noisevae/distributions/")),
    ("pyro_noisevae: IWAE_ELBO, VAE programs, likelihoods", ("pyro_noisevae/",)),
    ("torch: tensor kernels, autograd, optimizer, modules", ("/torch/", "<built-in method", "<method ")),
]


def _group(filename, name):
    key = f"{filename}:{name}"
    for label, needles in GROUPS:
        if any(n in key for n in needles):
            return label
    return "other Python (interpreter, builtins)"


def _profile(step, batches):
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for x in batches:
        step(x)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    groups, top = defaultdict(float), []
    for (filename, _, name), (_, ncalls, tottime, _, _) in stats.stats.items():
        groups[_group(filename, name)] += tottime
        top.append((tottime, ncalls, f"{Path(filename).name}:{name}" if filename != "~" else name))
    top.sort(reverse=True)
    return wall, dict(groups), top[:15]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", split="train", root=args.data_root).data[: 100 * args.steps]
    batches = list(data.split(100))
    report = {"steps": args.steps, "threads": args.threads, "torch": torch.__version__, "pyro": pyro.__version__,
              "cpu": platform.processor() or platform.machine(), "python": platform.python_version(), "runs": {}}
    with pyro.settings.context(module_local_params=True):
        for label, elbo, kw in [("Trace_ELBO", Trace_ELBO(max_plate_nesting=1), {}),
                                ("IWAE_ELBO K=5", IWAE_ELBO(num_particles=5, max_plate_nesting=1),
                                 {"objective": "iwae", "num_particles": 5})]:
            for path in ("pyro", "fused"):
                pyro.set_rng_seed(0)
                vae = VAE(784, 50, (500, 500), likelihood="normal", sigma=0.2)
                fused = FusedVAEObjective(vae, validate=False, **kw) if path == "fused" else None
                trainer = Trainer(vae, vae.model, vae.guide, elbo, data, batch_size=100, objective=fused)
                for x in batches[:5]:  # warm-up
                    trainer.step(x)
                wall, groups, top = _profile(trainer.step, batches)
                report["runs"][f"{label} / {path}"] = {"ms_per_step": 1e3 * wall / args.steps,
                                                       "ms_per_step_by_group": {k: 1e3 * v / args.steps for k, v in groups.items()},
                                                       "top_self_time": [{"ms_per_step": 1e3 * t / args.steps,
                                                                          "calls_per_step": n / args.steps, "function": f}
                                                                         for t, n, f in top]}
                print(f"{label} / {path}: {1e3 * wall / args.steps:.1f} ms/step (under the profiler)", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pyro_step_profile_cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    labels = [g for g, _ in GROUPS] + ["other Python (interpreter, builtins)"]
    runs = report["runs"]
    lines = [
        "# Profile of one training step: Pyro programs vs the fused path (CPU)",
        "",
        f"`python benchmarks/profile_pyro_step.py --steps {args.steps} --threads {args.threads}`; MLP VAE 784-500-500-50, "
        f"σ-VAE decoder, batch 100; torch {report['torch']}, pyro {report['pyro']}, {args.threads} thread(s). Self time "
        "per step (ms) under cProfile (which inflates Python-heavy code), grouped by where the function lives.",
        "",
        "| group | " + " | ".join(runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for g in labels:
        lines.append(f"| {g} | " + " | ".join(f"{r['ms_per_step_by_group'].get(g, 0.0):.2f}" for r in runs.values()) + " |")
    lines.append("| **total (wall, profiled)** | " + " | ".join(f"**{r['ms_per_step']:.2f}**" for r in runs.values()) + " |")
    for name, r in runs.items():
        if name.endswith("/ pyro"):
            lines += ["", f"Top self time, {name}:", "", "| ms/step | calls/step | function |", "|---:|---:|---|"]
            lines += [f"| {t['ms_per_step']:.2f} | {t['calls_per_step']:.0f} | `{t['function']}` |" for t in r["top_self_time"]]
    (out / "pyro_step_profile_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
