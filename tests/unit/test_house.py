"""The package stays in rooms a reader can take in: no module of prunecli over 500 lines."""

from __future__ import annotations

from pathlib import Path

import prunecli

PACKAGE = Path(prunecli.__file__).resolve().parent
MAX_LINES = 500


def test_no_module_is_over_500_lines():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 20  # the whole package was read
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
