from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import make_tiny_bert

REPO = Path(__file__).resolve().parent.parent
SHARED_GLUE = REPO.parent / "shared" / "glue"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests on genuine GLUE data")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("PRUNECLI_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: opt in with --runslow or PRUNECLI_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test may reach a hub; caches go to the test's own folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("PRUNECLI_CACHE_DIR", str(tmp_path / "prunecli_cache"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny random BertForSequenceClassification checkpoint with its tokenizer (do not modify it)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))
