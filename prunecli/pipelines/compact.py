"""Placeholder until compaction moves here: re-exports `prunecli.cli.compact`'s pipeline under its new names."""

from __future__ import annotations

from prunecli.cli.compact import CHECK_EXAMPLES, REPORT_FILE
from prunecli.cli.compact import _write_json as write_json
from prunecli.cli.compact import run as compact_and_save

__all__ = ["CHECK_EXAMPLES", "REPORT_FILE", "compact_and_save", "write_json"]
