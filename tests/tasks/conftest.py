"""Fixtures of the result and writer contracts: a tiny synthetic CT series and one example
result of every type on it (results_factory)."""

from __future__ import annotations

import pytest
import results_factory as rf

from medsight.io import read


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return read(rf.ct_series(tmp_path_factory.mktemp("ct")))


@pytest.fixture(scope="module")
def examples(image):
    return rf.examples(image)
