"""INT8 on top of compaction, from bench/results/export_speed.json (bench/bench_export.py): BENCHMARKS.md's section
and its goals. Pure Python on the JSON; only measured numbers appear.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

EXPORT_FILE = "export_speed.json"
CASES = ("b32 s128", "b1 s128")
INT8_GAIN_GOAL = 1.7  # issue 30: INT8 on top of compaction, onnxruntime, b32 x 128
SIZE_GOAL = 0.25  # the compacted INT8 file at most a quarter of the dense float32 checkpoint
EXPORT_SECONDS_GOAL = 30.0  # `prunecli export --quantize int8` of a MiniLM-L6 checkpoint, whole process
BEGIN, END = "<!-- deploy:begin (bench/render_results.py --readme) -->", "<!-- deploy:end -->"


def _read(results_dir: Path) -> dict | None:
    try:
        return json.loads((Path(results_dir) / EXPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def table(record: dict) -> list[str]:
    """One row per exported file: accuracy (through onnxruntime), file size, export time, speed-ups."""
    cases = [c for c in CASES if c in record["summary"]["cases"]]
    head = ["file", "accuracy", "MB", "export s", *(f"speed-up {c}" for c in cases), "INT8 agreement"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, entry in record["exports"].items():
        accuracy = entry.get("metrics", {}).get("accuracy")
        agreement = entry["checks"].get("int8_argmax_agreement")
        cells = [name, f"{accuracy:.4f}" if accuracy is not None else "—", f"{entry['file_mb']:.1f}",
                 f"{entry['export_seconds_whole_process']:.1f}",
                 *(f"{record['summary']['cases'][c][name]['speedup_vs_dense_fp32']:.2f}x" for c in cases),
                 f"{agreement:.1%}" if agreement is not None else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# An absolute path into a checkout (`/any/where/.venv/...`, `/any/where/bench/...`) or into the data folder
# beside it (`/any/where/shared/glue`), as a run recorded it on its machine.
_CHECKOUT_PATH = re.compile(r"(?<![\w./-])/[^\s'\"]*?/(?=(?:\.venv|bench|recipes|prunecli)/)")
_SHARED_PATH = re.compile(r"(?<![\w./-])/[^\s'\"]*?/shared/")


def portable_command(cmd: str) -> str:
    """A recorded command as a reader runs it from the repository's root with the data in ../shared: the
    recording machine's absolute paths made relative, whatever machine renders the document."""
    return _CHECKOUT_PATH.sub("", _SHARED_PATH.sub("../shared/", cmd))


def section(results_dir: Path) -> list[str]:
    """BENCHMARKS.md's INT8 section."""
    record = _read(results_dir)
    lines = ["## INT8 on top of compaction: the deployed files", ""]
    if record is None:
        return lines + ["Not measured yet: `.venv/bin/python bench/bench_export.py --dense DENSE --compacted "
                        "COMPACTED --data_dir ../shared/glue/MRPC` (see docs/deploy.md).", ""]
    lines += ["Dense and compacted checkpoints exported to float32 and INT8 ONNX (`prunecli export`, dynamic "
              "per-channel INT8), timed in one `prunecli benchmark` run through onnxruntime, speed-ups against "
              "the dense float32 file; accuracy through `prunecli evaluate` on the files. Command: `"
              + portable_command(record["command"]) + "`.", "", *table(record), ""]
    for case, figures in record["summary"]["cases"].items():
        lines.append(f"- {case}: INT8 on top of compaction {figures['int8_gain_on_compacted']:.2f}x, on the dense "
                     f"model {figures['int8_gain_on_dense']:.2f}x")
    return lines + [""]


def goal_lines(results_dir: Path) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met) for the deployment goals that export_speed.json measures."""
    record = _read(results_dir)
    if record is None:
        return []
    summary, goals = record["summary"], []
    case = summary["cases"].get("b32 s128")
    if case:
        gain = case["int8_gain_on_compacted"]
        goals.append((f"INT8 on top of compaction >= {INT8_GAIN_GOAL}x (onnxruntime, b32 x 128)", f"{gain:.2f}x",
                      gain >= INT8_GAIN_GOAL))
    share = summary.get("compacted_int8_share_of_dense_checkpoint")
    if share is not None:
        goals.append(("compacted INT8 file <= 1/4 of the dense float32 checkpoint", f"{share:.2f}",
                      share <= SIZE_GOAL))
    seconds = record["exports"]["dense int8"]["export_seconds_whole_process"]
    goals.append((f"`prunecli export --quantize int8` < {EXPORT_SECONDS_GOAL:g} s, whole process (dense)",
                  f"{seconds:.1f} s", seconds < EXPORT_SECONDS_GOAL))
    return goals


def readme_block(results_dir: Path) -> str:
    """README.md's deployment table: accuracy through onnxruntime, size and speed-ups of the four files."""
    record = _read(results_dir)
    if record is None:
        return "\n".join([BEGIN, "Not measured yet: `bench/bench_export.py` (see BENCHMARKS.md).", END])
    cases = [c for c in CASES if c in record["summary"]["cases"]]
    dense = record["exports"]["dense fp32"].get("metrics", {}).get("accuracy")
    head = ["file", "accuracy", "vs dense", "MB", *(f"speed-up {c.replace(' s', ' x ')}" for c in cases)]
    lines = [BEGIN, "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, entry in record["exports"].items():
        accuracy = entry.get("metrics", {}).get("accuracy")
        change = "" if name == "dense fp32" or None in (accuracy, dense) else f"{accuracy / dense - 1:+.2%}"
        lines.append("| " + " | ".join([
            name, f"{accuracy:.4f}" if accuracy is not None else "—", change, f"{entry['file_mb']:.1f}",
            *(f"{record['summary']['cases'][c][name]['speedup_vs_dense_fp32']:.2f}x" for c in cases)]) + " |")
    return "\n".join([*lines, END])
