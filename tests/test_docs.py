"""
The documentation site (``docs/``) builds with warnings as errors, gives every name of every public ``__all__`` an
entry in its object inventory, and renders every tutorial notebook with its stored outputs.

Sphinx runs in a subprocess (one build shared by the tests of this module): the build imports the whole package
and must not inherit this suite's warnings-as-errors filter or its already imported modules.
"""

import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import pyro_noisevae

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _public_modules():
    names = [pyro_noisevae.__name__]
    for info in pkgutil.walk_packages(pyro_noisevae.__path__, pyro_noisevae.__name__ + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return {name: importlib.import_module(name) for name in names}


def _read_inventory(path):
    """``{(domain:role, name)}`` of a Sphinx ``objects.inv`` (version 2: four header lines, then zlib)."""
    raw = path.read_bytes()
    header, _, body = raw.partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2"), header[:40]
    entries = set()
    for line in zlib.decompress(body).decode().splitlines():
        match = re.match(r"(.+?)\s+(\S+:\S+)\s+(-?\d+)\s+?(\S*)\s+(.*)", line)
        if match:
            entries.add((match.group(2), match.group(1)))
    return entries


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env.setdefault("MPLCONFIGDIR", str(out / "mpl"))
    env.setdefault("XDG_CACHE_HOME", str(out / "xdg"))
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
               "-d", str(out / "doctrees"), str(REPO / "docs"), str(out / "html")]
    build = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    return build, out / "html"


def test_the_site_builds_without_warnings(site):
    build, html = site
    assert build.returncode == 0, f"sphinx-build failed ({build.returncode}):\n{build.stderr[-6000:]}"
    assert (html / "index.html").exists()


def test_every_public_name_has_an_entry(site):
    build, html = site
    assert (html / "objects.inv").exists(), build.stderr[-3000:]
    documented = {name for role, name in _read_inventory(html / "objects.inv") if role.startswith("py:")}
    modules = _public_modules()
    missing = []
    for modname, module in modules.items():
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                names = {obj.__name__}
            else:
                # an object is documented once, under any module that exports it (or where it is defined)
                names = {f"{other}.{key}" for other, mod in modules.items() for key in getattr(mod, "__all__", [])
                         if getattr(mod, key) is obj}
                if inspect.isclass(obj) or inspect.isroutine(obj):
                    names.add(f"{obj.__module__}.{obj.__qualname__}")
            if not names & documented:
                missing.append(f"{modname}.{name}")
    assert not missing, f"public names without an entry in the API reference: {missing}"
    assert {"pyro_noisevae.infer.IWAE_ELBO", "pyro_noisevae.guides.DenoisingGuide"} <= documented


def test_the_tutorials_are_rendered_with_their_outputs(site):
    _, html = site
    notebooks = sorted((REPO / "tutorials").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 6
    for notebook in notebooks:
        page = html / "tutorials" / f"{notebook.stem}.html"
        assert page.exists(), f"{notebook.name} has no page"
        text = page.read_text()
        cells = json.loads(notebook.read_text())["cells"]
        outputs = [out for cell in cells for out in cell.get("outputs", [])]
        images = sum("image/png" in out.get("data", {}) for out in outputs)
        assert outputs, f"{notebook.name} has no stored outputs"
        assert text.count("cell_output") >= 1, f"{page.name} shows no output cell"
        assert text.count("<img") >= images, f"{page.name} shows fewer images than the {images} of {notebook.name}"


def test_the_other_pages_are_built(site):
    _, html = site
    for page in ("installation", "concepts", "support", "api", "tutorials", "results"):
        assert (html / f"{page}.html").exists(), page
    for readme in (REPO / "results").glob("*/README.md"):
        assert (html / "results" / f"{readme.parent.name}.html").exists(), readme
