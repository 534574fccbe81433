"""House checks: the module-size budget is a warning of the before-stop check (`bench/module_sizes.py`, run by
`make lint` and `make test`), not a failing test; every declared dependency is used."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import prunecli

PACKAGE = Path(prunecli.__file__).resolve().parent
REPO = PACKAGE.parent
#: Distribution names whose import name differs.
IMPORT_NAMES = {"scikit-learn": "sklearn"}


def test_the_size_budget_is_a_warning_of_the_before_stop_check(capsys):
    sys.path.insert(0, str(REPO))
    from bench import module_sizes

    sizes = module_sizes.module_sizes(PACKAGE)
    assert len(sizes) > 20 and "prunecli/cli/app.py" in sizes  # the whole package was read
    smallest = min(sizes.values())
    warned = module_sizes.over_budget(sizes, smallest)
    assert len(warned) == sum(1 for n in sizes.values() if n > smallest) and warned[0].startswith("warning: ")
    assert module_sizes.main(["1"]) == 0  # every module over budget: warnings, never a failure
    assert "warning: prunecli/" in capsys.readouterr().out
    for target in ("lint", "test"):
        recipe = re.search(rf"^{target}:.*?(?=^\S|\Z)", (REPO / "Makefile").read_text(), flags=re.M | re.S)
        assert recipe and "bench/module_sizes.py" in recipe.group(0), target


def test_every_declared_dependency_is_imported_by_the_package():
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    sources = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    for requirement in declared:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {module}\b", sources, flags=re.M), f"{name} is declared, never imported"
