"""Create (or reuse) `bench/.venv-inc`: the environment that runs Intel Neural Compressor 2.6's pruner.

INC removed its pruner in 3.8, so the side-by-side benchmark needs INC 2.6 in an environment of its
own (its requirements clash with prunecli's: numpy<2, setuptools<70). This script is idempotent:
a stamp file records what was installed, and a second call only re-checks the import.

Install order matters on this machine: torch==2.13.0 first (the local CPU wheel), and then every
other package with torch==2.13.0 as a pip *constraint*, so that no resolver ever replaces it with
the multi-gigabyte CUDA build.

transformers is pinned to 5.23.0, the version in prunecli's own environment: it imports with
numpy<2 and torch 2.13 here, INC 2.6's pruner only touches `torch.nn.Linear` modules (not
transformers internals), and the same modelling code on both sides keeps the wall-time comparison
about the pruner and the loop, not about two BERT implementations. (The example's own
`transformers.AdamW` no longer exists in 5.x; `bench/inc_prune.py` uses the equivalent
`torch.optim.AdamW` with the same eps, see there.)

Usage: python bench/inc_env.py [--venv bench/.venv-inc] [--force] [--json]
Prints the installed versions (as JSON with --json); exit code 0 when the pruner imports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH / ".venv-inc"

TORCH = "torch==2.13.0"
TRANSFORMERS = "transformers==5.23.0"
# INC 2.6 still imports pkg_resources (setuptools<70) and six, and was built against numpy 1.x.
INC_REQUIREMENTS = ["neural-compressor==2.6", "numpy<2", "setuptools<70", "six", TRANSFORMERS]
STAMP_NAME = ".bench-inc-installed"

CHECK = r"""
import json, platform, sys
import numpy, torch, transformers, neural_compressor
from neural_compressor.compression.pruner import prepare_pruning  # noqa: F401  (the API the example used)
from neural_compressor.training import WeightPruningConfig  # noqa: F401
print(json.dumps({
    "python": platform.python_version(),
    "neural_compressor": neural_compressor.__version__,
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "numpy": numpy.__version__,
}))
"""


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _pip(python: Path, *args: str, log) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), file=log, flush=True)
    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)


def check_versions(venv_dir: Path) -> dict[str, str]:
    """Import the pruner API in the INC environment; return the versions found there."""
    env = dict(os.environ, TRANSFORMERS_OFFLINE="1", HF_HUB_OFFLINE="1")
    out = subprocess.run(
        [str(venv_python(venv_dir)), "-c", CHECK], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_inc_env(venv_dir: Path = DEFAULT_VENV, force: bool = False, log=None) -> dict[str, str]:
    """Create the environment if needed and return its versions. Raises CalledProcessError on failure."""
    log = log or sys.stderr
    stamp = venv_dir / STAMP_NAME
    wanted = json.dumps({"torch": TORCH, "requirements": INC_REQUIREMENTS})
    if not force and stamp.exists() and stamp.read_text() == wanted:
        try:
            return check_versions(venv_dir)
        except (subprocess.CalledProcessError, OSError, json.JSONDecodeError):
            print("INC environment present but broken: reinstalling", file=log)
    if not venv_python(venv_dir).exists():
        print(f"creating {venv_dir}", file=log)
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    python = venv_python(venv_dir)
    _pip(python, "-q", TORCH, log=log)  # first: the local CPU wheel
    constraints = venv_dir / "constraints.txt"
    constraints.write_text(TORCH + "\n")
    _pip(python, "-q", "-c", str(constraints), *INC_REQUIREMENTS, log=log)
    versions = check_versions(venv_dir)
    if not versions["torch"].startswith("2.13.0"):
        raise RuntimeError(f"torch was replaced in {venv_dir}: {versions['torch']}")
    stamp.write_text(wanted)
    (venv_dir / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--force", action="store_true", help="reinstall even when the stamp matches")
    parser.add_argument("--json", action="store_true", help="print the versions as JSON")
    args = parser.parse_args(argv)
    versions = ensure_inc_env(args.venv, force=args.force)
    if args.json:
        print(json.dumps(versions))
    else:
        print(" ".join(f"{k}={v}" for k, v in versions.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
