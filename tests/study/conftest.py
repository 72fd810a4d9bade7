"""Study test fixtures (helpers live in study_helpers.py, importable by the test modules)."""

from __future__ import annotations

import pytest
from study_helpers import make_study

from study.service import StudyService


@pytest.fixture
def study(tmp_path) -> StudyService:
    """Three conditions (telea, unmask, real), 3 faces per expression, 2 practice, 2 catch."""
    return make_study(tmp_path)
