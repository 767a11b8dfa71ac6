"""Every docstring of the package is free of control characters (a non-raw docstring turns ``\\frac`` into a form feed
and ``\\approx`` into a bell: the rendered maths then reads "rac1K")."""

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pyro_noisevae"
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _docstrings(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield getattr(node, "name", path.stem), doc


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_docstrings_have_no_control_characters(path):
    bad = [(name, repr(CONTROL.search(doc).group())) for name, doc in _docstrings(path) if CONTROL.search(doc)]
    assert not bad, f"{path.name}: docstrings with control characters (use r-strings for maths): {bad}"


def test_the_check_catches_an_unescaped_frac(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('def f():\n    """:math:`\\frac1K`"""\n')
    assert [n for n, d in _docstrings(module) if CONTROL.search(d)] == ["f"]
