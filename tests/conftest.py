"""Shared fixtures: the real data beside the checkout, when it is there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RSCAFFOLD_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRACE_SETS = ["qwen3_thinking_traces", "thought_anchors_math", "thought_branches_faithfulness"]


@pytest.fixture
def shared_traces() -> Path:
    """../shared/data/traces; tests that need it skip in a user's clone, which has no ../shared."""
    path = SHARED / "traces"
    if not path.is_dir():
        pytest.skip(f"real traces not found at {path} (set RSCAFFOLD_SHARED_DATA to the shared data folder)")
    return path
