"""Build tutorial notebooks from their text sources, execute them, and write the ``.ipynb`` files with outputs.

Each tutorial is a percent-format text notebook (jupytext), ``tutorials/NN_name.py``: that file is the one to
edit. This script reads it, runs every cell (full budget by default, ``--smoke`` for the CI budget) and writes
``tutorials/NN_name.ipynb`` beside it with the outputs. A ``.ipynb`` path names the same tutorial.

    python tutorials/execute.py tutorials/01_sigma_vae.py               # full run, writes 01_sigma_vae.ipynb
    python tutorials/execute.py tutorials/0*.py                         # every tutorial
    python tutorials/execute.py --smoke --no-save tutorials/0*.py       # what the test suite does
    python tutorials/execute.py --device cuda tutorials/03_*.py         # train and evaluate on the GPU
    python tutorials/execute.py --check                                 # committed notebooks match their sources?

``--device cpu|cuda`` exports ``PYRO_NOISEVAE_DEVICE`` to the kernel; every notebook's setup cell reads it.
``--device auto`` (the default) does not set it: a notebook then uses CUDA when torch sees a GPU and the run
is not a smoke run, the CPU otherwise. ``--device cuda`` without a CUDA device is an error. Notebook 05
(NUTS and other tiny models) runs on the CPU whatever the device.

``-W FILTER`` (repeatable, pytest's ``filterwarnings`` syntax ``action:message:category:module:lineno``) sets
warning filters in the kernel before the first cell, in order, so a later filter wins: ``-W error`` turns every
warning into an error, as the test suite does.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
DEVICES = ("auto", "cpu", "cuda")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def sources():
    """The text sources of the tutorials, ``tutorials/NN_name.py``, in order."""
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def source_path(path):
    """The text source of the tutorial named by ``path`` (its ``.py`` or its ``.ipynb``)."""
    return Path(path).with_suffix(".py")


def notebook_path(path):
    """The generated notebook (with outputs) of the tutorial named by ``path``."""
    return Path(path).with_suffix(".ipynb")


def read_source(path):
    """The notebook, without outputs, that the text source of ``path`` describes."""
    nb = jupytext.read(source_path(path), fmt="py:percent")
    nb.metadata = nbformat.NotebookNode(kernelspec=dict(KERNELSPEC))
    return nb


def cell_sources(nb):
    """``(cell_type, source)`` of every cell: what the text source defines (outputs and metadata aside)."""
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def check(paths=None):
    """
    Compare each committed ``.ipynb`` with its text source; return one line per mismatch (empty when in sync).

    ``paths`` defaults to every tutorial (and then a notebook without a text source is a mismatch too). Only the
    cells' types and sources are compared: outputs come from executing, and the text source carries nothing else.
    """
    problems = []
    if paths is None:
        problems += [f"{nb.name}: no text source {nb.stem}.py" for nb in sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
                     if not source_path(nb).exists()]
    for src in map(source_path, paths or sources()):
        nb_path = notebook_path(src)
        if not src.exists():
            problems.append(f"{src.name}: no such text source")
            continue
        if not nb_path.exists():
            problems.append(f"{nb_path.name}: missing; run python tutorials/execute.py {os.path.relpath(src)}")
            continue
        want, have = cell_sources(read_source(src)), cell_sources(nbformat.read(nb_path, as_version=4))
        if want != have:
            first = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
            problems.append(
                f"{nb_path.name} differs from {src.name} (cell {first}; {len(have)} cells against {len(want)}); "
                f"run python tutorials/execute.py {os.path.relpath(src)}"
            )
    return problems


def _check_device(device):
    """Fail early, with a clear message, when CUDA is asked for (``device``, or with auto the environment) but absent."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        wanted, origin = os.environ.get("PYRO_NOISEVAE_DEVICE", ""), "PYRO_NOISEVAE_DEVICE={}"
    else:
        wanted, origin = device, "--device {}"
    if wanted.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f"{origin.format(wanted)} was requested but torch sees no CUDA device; use --device cpu")


def _parse_warning_filter(spec):
    """``action:message:category:module:lineno`` (pytest's ini syntax: message and module are regexes) as a tuple."""
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) > 5:
        raise ValueError(f"too many fields in warning filter {spec!r}")
    action, message, category, module, lineno = parts + [""] * (5 - len(parts))
    return action, message, category or "Warning", module, int(lineno or 0)


def _warning_filters_code(filters):
    """Code for the kernel that applies ``filters`` in order (each goes first, so a later filter wins)."""
    parsed = [_parse_warning_filter(f) for f in filters]
    return (
        "def _set_warning_filters():\n"
        "    import importlib, warnings\n"
        f"    for action, message, category, module, lineno in {parsed!r}:\n"
        "        owner, _, name = category.rpartition('.')\n"
        "        category = getattr(importlib.import_module(owner or 'builtins'), name)\n"
        "        warnings.filterwarnings(action, message, category, module, lineno)\n"
        "_set_warning_filters()\n"
        "del _set_warning_filters\n"
    )


def execute(path, smoke=False, save=True, timeout=1800, device="auto", warning_filters=()):
    """
    Build the tutorial ``path`` from its text source and run every cell in the tutorial folder; return the notebook.

    With ``save`` the notebook, outputs included, is written to ``NN_name.ipynb`` beside the source. ``device``
    (``"auto"``, ``"cpu"`` or ``"cuda"``) is passed to the kernel as ``PYRO_NOISEVAE_DEVICE`` (``"auto"``
    leaves the environment alone). ``warning_filters`` (pytest ``filterwarnings`` strings, applied in order) are
    set in the kernel before the first cell; ``("error",)`` makes any warning fail its cell.
    """
    _check_device(device)
    src = source_path(path)
    nb = read_source(src)
    setup = _warning_filters_code(warning_filters) if warning_filters else None

    async def on_notebook_start(notebook):
        if setup is None:
            return
        reply = await client.async_wait_for_reply(client.kc.execute(setup, silent=True, store_history=False))
        if reply is None or reply["content"]["status"] != "ok":
            content = reply["content"] if reply else {}
            raise RuntimeError(f"could not set the warning filters: {content.get('ename')}: {content.get('evalue')}")

    saved_env = {k: os.environ.get(k) for k in ("CI", "PYRO_NOISEVAE_DEVICE")}
    if smoke:
        os.environ["CI"] = "1"
    else:
        os.environ.pop("CI", None)
    if device != "auto":
        os.environ["PYRO_NOISEVAE_DEVICE"] = device
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(src.parent)}},
            on_notebook_start=on_notebook_start,
        )
        client.execute()
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    if save:
        nbformat.write(nb, notebook_path(src))
    return nb


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tutorials", nargs="*", help="text sources (NN_name.py) or their notebooks; --check: default all")
    p.add_argument("--check", action="store_true", help="only compare the committed .ipynb cells with the sources")
    p.add_argument("--smoke", action="store_true", help="set CI=1 so the notebook uses its smoke budget")
    p.add_argument("--no-save", action="store_true", help="do not write the .ipynb")
    p.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    p.add_argument(
        "--device", choices=DEVICES, default="auto",
        help="export PYRO_NOISEVAE_DEVICE to the kernel (auto: leave it unset; default %(default)s)",
    )
    p.add_argument(
        "-W", "--warning-filter", action="append", default=[], metavar="FILTER",
        help="a warning filter for the kernel, pytest filterwarnings syntax (repeatable; -W error: warnings fail)",
    )
    args = p.parse_args(argv)
    if args.check:
        problems = check(args.tutorials or None)
        for line in problems:
            print(line, file=sys.stderr)
        sys.exit(1 if problems else 0)
    if not args.tutorials:
        p.error("name the tutorials to run (e.g. tutorials/0*.py), or pass --check")
    missing = [t for t in args.tutorials if not source_path(t).exists()]
    if missing:
        p.error(f"no text source for {', '.join(missing)} (expected tutorials/NN_name.py)")
    try:
        _check_device(args.device)
        for spec in args.warning_filter:
            _parse_warning_filter(spec)
    except (RuntimeError, ValueError) as e:
        p.error(str(e))
    for tutorial in args.tutorials:
        t0 = time.time()
        execute(
            tutorial, smoke=args.smoke, save=not args.no_save, timeout=args.timeout, device=args.device,
            warning_filters=args.warning_filter,
        )
        print(f"{source_path(tutorial)}: executed in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
