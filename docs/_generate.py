"""Pages generated at build time (by ``conf.py``) into git-ignored folders of ``docs/``.

* ``api/``: one page per top-level module of the package. Every name in the ``__all__`` of every public module
  gets exactly one entry, at its user-facing location: a class or function where the shallowest subpackage
  exports it (``pyro_noisevae.nn.MLP``), a constant in the module that assigns it (where its ``#:`` comment is).
  A submodule's section lists the names it shares with its package, as links.
* ``tutorials/``: copies of the executed notebooks ``tutorials/NN_*.ipynb`` (outputs stored, never executed).
* ``results/``: one page per ``results/*/README.md``, the README included as is, then its figures.

Files are rewritten only when their content changes, so incremental builds stay incremental.
"""

import ast
import functools
import importlib
import importlib.util
import inspect
import pkgutil
import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
PACKAGE = "pyro_noisevae"
GENERATED = ("api", "tutorials", "results")
# folders of results/ that hold local training artefacts (git-ignored), not results
_LOCAL = {"checkpoints", "stages", "runs"}


def public_modules(package=PACKAGE):
    """Names of the package's public modules (no component starting with ``_``), the package first."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names, key=lambda n: (n != package, n))


def public_names(modname):
    module = importlib.import_module(modname)
    return list(getattr(module, "__all__", None) or [])


@functools.lru_cache(maxsize=None)
def _assigned_names(modname):
    """Names assigned at the top level of a module's source (where a constant's ``#:`` comment lives)."""
    spec = importlib.util.find_spec(modname)
    tree = ast.parse(Path(spec.origin).read_text())
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def _kind(obj):
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


def catalogue(modules=None):
    """``(owner, aliases)``: ``owner[(module, name)]`` is the documented full name of every exported object,
    ``aliases`` maps every other full name of a documented object (its ``__module__`` path, the other modules
    exporting it) to the documented one."""
    modules = modules or public_modules()
    exporters = {}  # id(obj) -> (obj, [(module, name), ...])
    for modname in modules:
        module = importlib.import_module(modname)
        for name in public_names(modname):
            obj = getattr(module, name)
            exporters.setdefault(id(obj), (obj, []))[1].append((modname, name))
    owner, aliases = {}, {}
    for obj, places in exporters.values():
        kind = _kind(obj)
        if kind == "module":
            for place in places:
                owner[place] = obj.__name__
            continue
        if kind == "data":
            # several unrelated constants can be the same interned object: group by name as well
            by_name = {}
            for modname, name in places:
                by_name.setdefault(name, []).append(modname)
            groups = [(name, mods) for name, mods in by_name.items()]
        else:
            groups = [(places[0][1], [m for m, _ in places])]
        for name, mods in groups:
            if kind == "data":
                defining = [m for m in mods if name in _assigned_names(m)]
                home = min(defining or mods, key=lambda m: (-m.count("."), m))
            else:
                candidates = [m for m in mods if m != PACKAGE] or mods
                defined_in = getattr(obj, "__module__", None) or ""
                home = min(candidates, key=lambda m: (m.count("."), not defined_in.startswith(m), m))
            full = f"{home}.{name}"
            for modname in mods:
                owner[(modname, name)] = full
                if modname != home:
                    aliases[f"{modname}.{name}"] = full
            if kind != "data" and getattr(obj, "__module__", None) and getattr(obj, "__qualname__", None):
                aliases.setdefault(f"{obj.__module__}.{obj.__qualname__}", full)
    aliases = {k: v for k, v in aliases.items() if k != v}
    return owner, aliases


def _heading(text, char):
    return f"{text}\n{char * len(text)}\n"


def _entry(full, obj):
    kind = _kind(obj)
    if kind in ("class", "exception"):
        return f".. auto{kind}:: {full}\n   :members:\n   :show-inheritance:\n"
    if kind == "function":
        return f".. autofunction:: {full}\n"
    value = "" if len(repr(obj)) <= 120 else "   :no-value:\n"
    return f".. autodata:: {full}\n{value}"


def _module_section(modname, owner, char):
    module = importlib.import_module(modname)
    parent, _, short = modname.rpartition(".")
    # a package may export a function named like one of its submodules (``evaluation.log_likelihood``): the
    # function keeps the name in the index, the submodule's section is not indexed
    attr = getattr(importlib.import_module(parent), short, None) if parent else None
    shadowed = attr is not None and not inspect.ismodule(attr)
    no_index = "   :no-index:\n" if shadowed else ""
    lines = [_heading(f"``{modname}``", char), f".. automodule:: {modname}\n   :no-members:\n{no_index}"]
    shared = []
    for name in sorted(public_names(modname), key=str.lower):
        full = owner[(modname, name)]
        obj = getattr(module, name)
        if _kind(obj) == "module":
            shared.append(f":mod:`{full}`")
        elif full == f"{modname}.{name}":
            lines.append(_entry(full, obj))
        else:
            shared.append(f":py:obj:`{name} <{full}>`")
    if shared:
        lines.insert(2, "Also exports " + ", ".join(shared) + ".\n")
    return "\n".join(lines)


def api_pages(modules=None):
    """``{file name: rst text}``: a page for the package and one per top-level module (with its submodules)."""
    modules = modules or public_modules()
    owner, _ = catalogue(modules)
    pages = {f"{PACKAGE}.rst": _module_section(PACKAGE, owner, "=")}
    for top in sorted({".".join(m.split(".")[:2]) for m in modules if m != PACKAGE}):
        parts = [_module_section(top, owner, "=")]
        subs = [m for m in modules if m.startswith(top + ".")]
        if subs:
            parts.append(_heading("Submodules", "-"))
            parts += [_module_section(sub, owner, "~") for sub in subs]
        pages[f"{top}.rst"] = "\n".join(parts)
    return pages


def tutorial_notebooks():
    return sorted((REPO / "tutorials").glob("[0-9][0-9]_*.ipynb"))


def results_pages():
    pages = {}
    for readme in sorted((REPO / "results").glob("*/README.md")):
        folder = readme.parent
        rel = Path("..", "..") / folder.relative_to(REPO)
        text = [f"```{{include}} {(rel / 'README.md').as_posix()}\n:relative-images:\n```\n"]
        figures = sorted(p for p in folder.rglob("*.png") if not _LOCAL & set(p.relative_to(folder).parts[:-1]))
        if figures:
            text.append("## Figures\n")
            for fig in figures:
                name = fig.relative_to(folder).as_posix()
                text.append(f"```{{figure}} {(rel / name).as_posix()}\n:width: 100%\n\n`{name}`\n```\n")
        pages[f"{folder.name}.md"] = "\n".join(text)
    return pages


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def _sync(folder, files):
    """Make ``folder`` hold exactly ``files`` (``{name: bytes}``)."""
    folder.mkdir(exist_ok=True)
    for stale in folder.iterdir():
        if stale.name not in files:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for name, data in files.items():
        _write(folder / name, data)


def generate():
    """Write ``api/``, ``tutorials/`` and ``results/`` under ``docs/``; returns the alias map of :func:`catalogue`."""
    _sync(DOCS / "api", {name: text.encode() for name, text in api_pages().items()})
    _sync(DOCS / "tutorials", {nb.name: nb.read_bytes() for nb in tutorial_notebooks()})
    _sync(DOCS / "results", {name: text.encode() for name, text in results_pages().items()})
    return catalogue()[1]
