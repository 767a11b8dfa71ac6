"""
The tutorials: each one runs top to bottom in smoke mode (``CI=1``), as Pyro runs its tutorials, the
committed notebooks hold exactly the cells of their text sources, and every number their prose quotes is one
that their committed outputs print.

A tutorial is built from its text source ``tutorials/NN_name.py`` (jupytext percent format) and executed with
nbclient, under this suite's warning policy: the kernel gets the ``filterwarnings`` of pyproject.toml (``error``
first) and of this test's marks, so a warning in a tutorial fails its cell.
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

_EXECUTE = Path(__file__).resolve().parents[1] / "tutorials" / "execute.py"
_spec = importlib.util.spec_from_file_location("_tutorial_execute", _EXECUTE)
tutorials = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tutorials)

SOURCES = tutorials.sources()
NOTEBOOKS = sorted(_EXECUTE.parent.glob("[0-9][0-9]_*.ipynb"))

# a decimal number, signed when a minus (ASCII or U+2212) starts it; not the tail of a longer token ("1.9.2",
# "v0.23"), and a hyphen after a digit or letter is a range ("0.86-1.11"), not a sign
_NUMBER = re.compile(r"(?<![\w.])(?:[-\u2212](?=\d))?\d+\.\d+")
_NOT_AN_OUTPUT = re.compile(r"<!--\s*not an output:(.*?)-->", re.DOTALL)
_TEXT_MIMES = ("text/plain", "text/markdown")


def _numbers(text):
    return [m.replace("\u2212", "-") for m in _NUMBER.findall(text)]


def _text(source):
    return "".join(source) if isinstance(source, list) else source


def _output_numbers(nb):
    """Every decimal number in the notebook's text outputs (streams, text/plain and text/markdown results)."""
    found = set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            texts = [out.get("text", "")] + [out.get("data", {}).get(mime, "") for mime in _TEXT_MIMES]
            for number in (n for t in texts for n in _numbers(_text(t))):
                found.update({number, number.lstrip("-")})
    return found


def _warning_policy(request):
    """The filters pytest applies to this test, in the order it applies them (a later one wins)."""
    marks = [arg for mark in reversed(list(request.node.iter_markers("filterwarnings"))) for arg in mark.args]
    return [*request.config.getini("filterwarnings"), *(request.config.getoption("pythonwarnings") or []), *marks]


def test_there_are_tutorials():
    assert len(SOURCES) >= 6, SOURCES


def test_committed_notebooks_match_their_text_sources():
    problems = tutorials.check()
    assert not problems, "\n".join(problems)


def test_a_warning_in_a_tutorial_fails_its_cell(tmp_path, request):
    source = tmp_path / "99_warns.py"
    source.write_text('# %%\nimport warnings\n\nsmoke_test = True\n\n# %%\nwarnings.warn("stale API", UserWarning)\n')
    with pytest.raises(CellExecutionError, match="stale API"):
        tutorials.execute(source, smoke=True, save=False, timeout=60, warning_filters=_warning_policy(request))
    assert not source.with_suffix(".ipynb").exists()


@pytest.mark.tutorial
# arviz 0.23's plot_trace (tutorial 05) passes a dict as alias_mapping to matplotlib's normalize_kwargs, which
# matplotlib 3.11 deprecates; the call is inside arviz, so nothing in the tutorial can avoid it.
@pytest.mark.filterwarnings(
    "ignore:Passing a dict or None as alias_mapping to normalize_kwargs:matplotlib.MatplotlibDeprecationWarning"
)
@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_tutorial_runs_in_smoke_mode(path, request):
    assert "smoke_test" in path.read_text(), f"{path.name} must define smoke_test = 'CI' in os.environ"
    nb = tutorials.execute(path, smoke=True, save=False, timeout=600, warning_filters=_warning_policy(request))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_quoted_number_pattern():
    text = "ν = 0.98 [0.87, 1.11]; L = −6.422, -10.444; 0.86-1.11; pyro 1.9.2; 7.2e-04; 60 000; x_1.5"
    assert _numbers(text) == ["0.98", "0.87", "1.11", "-6.422", "-10.444", "0.86", "1.11", "1.9", "7.2"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_quoted_numbers_match_outputs(path):
    """
    Every decimal number in a markdown cell appears, digit for digit, among the numbers the notebook's outputs
    print (a quote without the sign of a negative output counts), so that the prose cannot drift from the
    results. Numbers that are not outputs (paper values,
    parameter settings, equations) are listed in an HTML comment of the same cell,
    ``<!-- not an output: 0.5 88.71 -->``, which the rendered notebook does not show.
    """
    nb = json.loads(path.read_text())
    printed = _output_numbers(nb)
    missing = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        source = _text(cell["source"])
        exempt = {n for listed in _NOT_AN_OUTPUT.findall(source) for n in _numbers(listed)}
        exempt |= {n.lstrip("-") for n in exempt}
        prose = _NOT_AN_OUTPUT.sub("", source)
        missing += [f"cell {index}: {n}" for n in _numbers(prose) if n not in printed and n not in exempt]
    assert not missing, (
        f"{path.name}: numbers quoted in markdown but printed by no output (quote the printed value, or list the "
        "number in the cell's <!-- not an output: ... --> comment):\n" + "\n".join(missing)
    )
