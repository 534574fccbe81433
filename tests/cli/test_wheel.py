"""A pip-installed prunecli, outside the checkout: the wheel carries the recipes, `--recipe mixed` and the demo's
help work from an unrelated folder (slow: builds a wheel; opt in with --runslow or PRUNECLI_SLOW=1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import make_tiny_bert, write_glue_sst2_folder

REPO = Path(__file__).resolve().parents[2]


def _copy_sources(dest: Path) -> Path:
    """The project's files as git sees them (tracked and new, not ignored), links kept: a build leaves no
    build/ or egg-info in the checkout."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not os.path.lexists(source):  # deleted in the working tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        elif source.is_file():
            shutil.copy2(source, target)
    return dest


@pytest.mark.slow
def test_an_installed_wheel_finds_its_recipes_outside_the_checkout(tmp_path):
    source = _copy_sources(tmp_path / "src")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, cwd=tmp_path)
    [wheel] = wheels.glob("prunecli-*.whl")
    packed = zipfile.ZipFile(wheel).namelist()
    assert {"prunecli/recipes/mixed.json", "prunecli/recipes/best/sst2_4x1.json"} <= set(packed)

    # a fresh venv whose third-party packages are this one's (a .pth line), with prunecli only from the wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "reuse_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True)

    elsewhere = tmp_path / "elsewhere"
    make_tiny_bert(elsewhere / "dense", hidden_size=32, intermediate_size=64)
    write_glue_sst2_folder(elsewhere / "SST-2", n_train=16, n_dev=8)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"COLUMNS": "200", "HF_HUB_OFFLINE": "1",
                                                                       "TRANSFORMERS_OFFLINE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(venv / "bin" / "prunecli"), *args], cwd=elsewhere, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    where = subprocess.run([str(python), "-c", "import prunecli; print(prunecli.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    plan = run("prune", "--recipe", "mixed", "--dry_run", "--model_name_or_path", "dense", "--task_name", "sst2",
               "--data_dir", "SST-2", "--num_train_epochs", "3", "--sparsity_warm_epochs", "1",
               "--cooldown_epochs", "1", "--output_dir", "out")
    assert "4x1" in plan.stdout and "1x1" in plan.stdout and not (elsewhere / "out").exists()
    assert "recipes" in run("--help").stdout
    assert "Rotten Tomatoes" in run("demo", "--help").stdout
    assert "heads_neurons" in run("recipes").stdout
