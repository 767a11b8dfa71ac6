"""Every tutorial notebook runs top to bottom in smoke mode (``CI=1``), as Pyro runs its tutorials."""

import importlib.util
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))

_spec = importlib.util.spec_from_file_location("_tutorial_execute", TUTORIALS[0].parent / "execute.py") if TUTORIALS else None


@pytest.mark.tutorial
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_in_smoke_mode(path):
    text = path.read_text()
    assert "smoke_test" in text, f"{path.name} must define smoke_test = 'CI' in os.environ"
    module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(module)
    nb = module.execute(path, smoke=True, save=False, timeout=600)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
