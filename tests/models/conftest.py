"""Fixtures for model tests. The contract mixin lives in contract.py (imported as ``contract``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test modules import the mixin with ``from contract import ...`` and test_registry imports the
# test modules by name; make that work under every pytest import mode, not only ``prepend``.
_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from contract import Checkerboard, checkerboard  # noqa: E402


@pytest.fixture(scope="session")
def shared_board() -> Checkerboard:
    """The checkerboard known-answer dataset (see contract.checkerboard); contract classes use their
    own class-scoped ``board`` fixture."""
    return checkerboard()
