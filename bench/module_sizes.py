"""Before-stop check: prunecli modules over the size budget, printed as warnings (`make lint` and `make test` run it).

A budget is a prompt to look again, not a rule: a test that failed over 500 lines once pushed `resume.py` out of
the trainer and made an import loop. Let the design set the sizes; this only says where a module grew.
Always exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "prunecli"
BUDGET = 500


def module_sizes(package: Path = PACKAGE) -> dict[str, int]:
    """Lines of every module of the package, by path relative to the package's parent."""
    return {str(p.relative_to(package.parent)): len(p.read_text(encoding="utf-8").splitlines())
            for p in sorted(package.rglob("*.py"))}


def over_budget(sizes: dict[str, int], budget: int = BUDGET) -> list[str]:
    """One warning line per module over `budget` lines, largest first."""
    return [f"warning: {name} has {lines} lines (budget {budget}): does it still hold one thing?"
            for name, lines in sorted(sizes.items(), key=lambda item: -item[1]) if lines > budget]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    budget = int(args[0]) if args else BUDGET
    warnings = over_budget(module_sizes(), budget)
    print("\n".join(warnings) if warnings else f"module sizes: every prunecli module is within {budget} lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
