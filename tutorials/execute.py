"""Execute a tutorial notebook in place (full budget by default, ``--smoke`` for the CI budget).

    python tutorials/execute.py tutorials/01_sigma_vae.ipynb            # full run, outputs saved
    python tutorials/execute.py --smoke --no-save tutorials/*.ipynb     # what the test suite does
"""

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path, smoke=False, save=True, timeout=1800):
    """Run every cell of ``path`` with the notebook's folder as working directory; return the notebook."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env_ci = os.environ.get("CI")
    if smoke:
        os.environ["CI"] = "1"
    else:
        os.environ.pop("CI", None)
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute()
    finally:
        if env_ci is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = env_ci
    if save:
        nb.metadata.pop("widgets", None)
        nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
        nbformat.write(nb, path)
    return nb


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--smoke", action="store_true", help="set CI=1 so the notebook uses its smoke budget")
    p.add_argument("--no-save", action="store_true", help="do not write outputs back")
    p.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    args = p.parse_args(argv)
    for nb in args.notebooks:
        t0 = time.time()
        execute(nb, smoke=args.smoke, save=not args.no_save, timeout=args.timeout)
        print(f"{nb}: executed in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
