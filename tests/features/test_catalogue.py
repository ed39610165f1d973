from __future__ import annotations

from pathlib import Path

import pytest

from cadence.features import catalogue_markdown
from cadence.features.catalogue import NODE_FAMILIES, USER_FAMILIES, user_features
from cadence.ingest import SENSITIVE_COLUMNS

pytestmark = pytest.mark.unit


def test_more_than_200_user_features_with_unique_names():
    names = [f.name for f in user_features()]
    assert len(names) >= 200
    assert len(names) == len(set(names))
    assert all(f.dtype in ("int64", "float64") for f in user_features())


def test_no_feature_is_or_reads_a_sensitive_attribute():
    for fam in (*USER_FAMILIES, *NODE_FAMILIES):
        for f in fam.features:
            assert not any(s in f.name for s in SENSITIVE_COLUMNS), f.name


def test_docs_are_generated_from_the_catalogue():
    doc = Path(__file__).resolve().parents[2] / "docs" / "features.md"
    assert doc.read_text() == catalogue_markdown(), "run `cadence features docs`"
