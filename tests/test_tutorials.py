"""
The tutorials: each one runs top to bottom in smoke mode (``CI=1``), as Pyro runs its tutorials, and the
committed notebooks hold exactly the cells of their text sources.

A tutorial is built from its text source ``tutorials/NN_name.py`` (jupytext percent format) and executed with
nbclient, under this suite's warning policy: the kernel gets the ``filterwarnings`` of pyproject.toml (``error``
first) and of this test's marks, so a warning in a tutorial fails its cell.
"""

import importlib.util
from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

_EXECUTE = Path(__file__).resolve().parents[1] / "tutorials" / "execute.py"
_spec = importlib.util.spec_from_file_location("_tutorial_execute", _EXECUTE)
tutorials = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tutorials)

SOURCES = tutorials.sources()


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
