"""The dashboards tests share the synthetic ward of tests/api (``ward_fixtures``)."""

from __future__ import annotations

import sys
from pathlib import Path

# Test directories are not packages (pytest's default import mode): make the API tests'
# fixtures module importable from here without copying it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
