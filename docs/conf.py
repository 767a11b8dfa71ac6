"""Sphinx configuration of the pyro_noisevae documentation.

Build: ``.venv/bin/sphinx-build -W -b html docs docs/_build/html`` (after installing the ``docs`` extra).
Nothing is downloaded or executed: the API pages are generated from the package's ``__all__`` lists, and the
tutorials are the committed notebooks with their stored outputs (see ``_generate.py``).
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
sys.path.insert(1, str(DOCS.parent))

# matplotlib (imported by the package) must not look for a display
os.environ.setdefault("MPLBACKEND", "Agg")

import _generate  # noqa: E402

import pyro_noisevae  # noqa: E402

ALIASES = _generate.generate()

project = "pyro_noisevae"
author = "the pyro_noisevae authors"
copyright = "the pyro_noisevae authors, Apache-2.0"
release = version = pyro_noisevae.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.mathjax", "myst_nb"]
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# the notebooks hold their outputs; never run them at build time
nb_execution_mode = "off"
nb_merge_streams = True
# an output whose only MIME type has no renderer (a widget's state) is left out instead of failing the build
suppress_warnings = ["mystnb.unknown_mime_type"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
# a method without its own docstring is left out rather than shown with torch's or Pyro's
autodoc_inherit_docstrings = False
add_module_names = False
python_display_short_literal_types = True

# references into this package must resolve (a renamed or moved name fails the build); others (torch, Pyro,
# builtins) are left as text: no inventories are downloaded
PACKAGE = "pyro_noisevae"
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", rf"(?!{PACKAGE}\.).*"), (r"py:.*", rf"{PACKAGE}\..*\._.*")]

html_theme = "furo"
html_title = f"pyro_noisevae {release}"
html_static_path = []
html_show_sourcelink = False
html_copy_source = False


def _canonical(name):
    """The documented name of ``name`` or of its longest aliased prefix (``...linear.LinearVAE.exact_posterior``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        full = ALIASES.get(".".join(parts[:i]))
        if full is not None:
            return ".".join([full, *parts[i:]])
    return name


def _resolve_alias(app, env, node, contnode):
    """Resolve a reference Pyro's rules leave unresolved: another name of a documented object (the path of its
    defining module, as in type annotations and ``Bases:``, or of another module exporting it), or a short name
    defined in a module enclosing the docstring's (``:func:`uvb_denoise``` in ``experiments.empirical_bayes``)."""
    if node.get("refdomain") != "py" or node.get("refspecific"):
        return None
    target = node.get("reftarget", "")
    module = node.get("py:module") or ""
    scopes = [".".join(module.split(".")[:i]) for i in range(module.count(".") + 1, 0, -1)] if module else []
    domain = env.get_domain("py")
    for name in [target, *(f"{scope}.{target}" for scope in scopes)]:
        full = _canonical(name)
        if full.startswith(PACKAGE + ".") and full in domain.objects:
            return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", full, node, contnode)
    return None


def _drop_type_docstring(app, what, name, obj, options, lines):
    """A constant without a ``#:`` comment would otherwise show the docstring of its type (``dict()``...)."""
    if what == "data" and lines and type(obj).__doc__ and "\n".join(lines).strip() == type(obj).__doc__.strip():
        lines.clear()


def setup(app):
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-process-docstring", _drop_type_docstring)
