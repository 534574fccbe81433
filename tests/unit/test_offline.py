"""The test suite's offline guard holds from collection on: a test module that imports transformers while it is
collected (before any fixture runs) already sees the hub, transformers and datasets offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

PROBE = '''
import datasets.config
import huggingface_hub.constants
import transformers  # noqa: F401  (imported at collection, as tests/unit/test_callback.py does)

AT_COLLECTION = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)


def test_offline_at_collection():
    assert AT_COLLECTION == (True, True)
'''


def test_a_module_importing_transformers_at_collection_sees_offline_mode(tmp_path):
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES} | {"PYTHONPATH": str(REPO)}
    # the suite's conftest loaded the way pytest loads it: before the test modules are imported
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                             "-c", str(tmp_path / "pytest.ini"), str(tmp_path / "test_probe.py")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
