"""Fixtures of the conformance suite: one freshly built program per test (the param store is cleared in between)."""

import pytest
from programs import make


@pytest.fixture
def program(request):
    """The program named by the test's parameter (``indirect=True``), its guide near the exact posterior."""
    return make(request.param)


@pytest.fixture
def exact_program(request):
    """The program named by the test's parameter (``indirect=True``), its guide at the exact posterior."""
    return make(request.param, init="exact")
