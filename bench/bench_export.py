"""What INT8 adds on top of compaction, measured on the deployed files: dense and compacted, float32 and INT8 ONNX.

Given a dense fine-tuned checkpoint and a compacted one (e.g. `prune --compact` of it), this exports each to a
float32 and an INT8 deployment folder with `prunecli export` (each export one timed process, the way a user waits
for it: the export cost), then times the four `model.onnx` files in ONE `prunecli benchmark` process through
onnxruntime, the models taking turns, at batch 32 x 128 and 1 x 128 tokens (random ids, full masks) and, with
data options, on the task's real lengths. The dense float32 file is the baseline of every speed-up. With data
options (or data recorded in the checkpoints), each file is also scored with `prunecli evaluate` (onnxruntime).

    .venv/bin/python bench/bench_export.py --dense DENSE --compacted RUN/compact --data_dir ../shared/glue/MRPC
    # writes bench/results/export_speed.json (--output to choose); exports go to bench/work/export/

Figures reported: per file its size (MB = 10^6 bytes), precision, export seconds (whole process) and the export's
checks (float32 logit difference; INT8 largest logit difference and argmax agreement); per case the median
latency and speed-up; the INT8 gain on top of compaction (compacted fp32 / compacted int8 latency); the compacted
INT8 file's size against the dense checkpoint's weights. Take the timings with the machine to yourself.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SCHEMA = "prunecli.bench_export/1"
FILES = {  # name -> (source key, --quantize)
    "dense fp32": ("dense", None), "dense int8": ("dense", "int8"),
    "compacted fp32": ("compacted", None), "compacted int8": ("compacted", "int8"),
}
DATA_OPTIONS = ("task_name", "data_dir", "validation_file")


def _prunecli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunecli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO)


def _checked(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done


def export_all(sources: dict[str, Path], work: Path, data_args: list[str], env: dict[str, str]) -> dict[str, dict]:
    """The four deployment folders under `work`, each exported by one timed `prunecli export` process."""
    exports = {}
    for name, (key, quantize) in FILES.items():
        out = work / name.replace(" ", "_")
        args = ["export", str(sources[key]), "--output_dir", str(out), "--overwrite_output_dir", *data_args]
        if quantize:
            args += ["--quantize", quantize]
        start = time.perf_counter()
        _checked(_prunecli(*args, env=env), f"prunecli {shlex.join(args)}")
        seconds = time.perf_counter() - start
        record = json.loads((out / "export.json").read_text(encoding="utf-8"))
        exports[name] = {"folder": str(out), "command": "prunecli " + shlex.join(args),
                         "export_seconds_whole_process": round(seconds, 2), "precision": record["precision"],
                         "file_bytes": record["file_bytes"], "file_mb": record["file_mb"],
                         "source_file_mb": record["source_file_mb"], "checks": _check_summary(record),
                         "checked_on": record["checked_on"]}
    return exports


def _check_summary(record: dict) -> dict:
    checks = record["checks"]
    out = {"float32_max_abs_diff": checks["float32"]["max_abs_diff"]}
    if "int8" in checks:
        out.update(int8_max_abs_diff=checks["int8"]["max_abs_diff"],
                   int8_argmax_agreement=checks["int8"]["argmax_agreement"], int8_examples=checks["int8"]["examples"])
    return out


def time_all(exports: dict[str, dict], args: argparse.Namespace, data_args: list[str], env: dict[str, str]) -> dict:
    """The four files in one `prunecli benchmark` process (onnxruntime), dense fp32 first (the baseline)."""
    bench_args = ["benchmark", *(e["folder"] for e in exports.values()), "--backend", "onnxruntime",
                  "--batch_sizes", args.batch_sizes, "--sequence_length", str(args.sequence_length), "--json",
                  *data_args, *args.timing]
    if args.threads:
        bench_args += ["--threads", str(args.threads)]
    done = _checked(_prunecli(*bench_args, env=env), "prunecli benchmark")
    result = json.loads(done.stdout)
    result["command"] = "prunecli " + shlex.join(bench_args)
    return result


def evaluate_all(exports: dict[str, dict], data_args: list[str], env: dict[str, str]) -> None:
    """Each file's metrics through `prunecli evaluate` (onnxruntime), added to its entry."""
    for entry in exports.values():
        args = ["evaluate", entry["folder"], "--json", *data_args]
        entry["metrics"] = json.loads(_checked(_prunecli(*args, env=env), "prunecli evaluate").stdout)["metrics"]
        entry["evaluate_command"] = "prunecli " + shlex.join(args)


def summarize(exports: dict[str, dict], timing: dict, dense_weights_mb: float | None) -> dict:
    """Speed-ups per case, the INT8 gain on top of compaction, and the size of the compacted INT8 file."""
    by_label = dict(zip(exports, timing["models"], strict=True))
    cases = {}
    for case in timing["cases"]:
        figures = {name: model["cases"][case]["onnxruntime"] for name, model in by_label.items()}
        cases[case] = {name: {"median_ms": f["median_ms"], "speedup_vs_dense_fp32": f["speedup"]}
                       for name, f in figures.items()}
        cases[case]["int8_gain_on_compacted"] = (figures["compacted fp32"]["median_ms"]
                                                 / figures["compacted int8"]["median_ms"])
        cases[case]["int8_gain_on_dense"] = figures["dense fp32"]["median_ms"] / figures["dense int8"]["median_ms"]
    small = exports["compacted int8"]["file_mb"]
    return {"cases": cases, "compacted_int8_mb": small, "dense_checkpoint_weights_mb": dense_weights_mb,
            "compacted_int8_share_of_dense_checkpoint": small / dense_weights_mb if dense_weights_mb else None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", required=True, help="the dense fine-tuned checkpoint (the baseline)")
    parser.add_argument("--compacted", required=True, help="a compacted checkpoint (prune --compact, compact)")
    parser.add_argument("--work", default=str(BENCH / "work" / "export"), help="where the exports are written")
    parser.add_argument("--output", default=str(BENCH / "results" / "export_speed.json"))
    parser.add_argument("--batch_sizes", default="32,1")
    parser.add_argument("--sequence_length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no_evaluate", action="store_true", help="time only, do not score the files")
    for name in DATA_OPTIONS:
        parser.add_argument(f"--{name}", default=None, help="data for the checks, the scores and the data cases")
    parser.add_argument("--timing", nargs=argparse.REMAINDER, default=[],
                        help="extra prunecli benchmark options (e.g. --timing --repeats 3 --min_time 0.5)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    data_args = [arg for name in DATA_OPTIONS if getattr(args, name) for arg in (f"--{name}", getattr(args, name))]
    sources = {"dense": Path(args.dense), "compacted": Path(args.compacted)}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    exports = export_all(sources, work, data_args, env)
    timing = time_all(exports, args, data_args, env)
    if not args.no_evaluate:
        evaluate_all(exports, data_args, env)
    result = {
        "schema": SCHEMA, "command": shlex.join([sys.executable, *sys.argv]) if argv is None else
        "bench/bench_export.py " + shlex.join(argv),
        "sources": {k: str(v) for k, v in sources.items()}, "exports": exports,
        "summary": summarize(exports, timing, exports["dense fp32"]["source_file_mb"]), "benchmark": timing,
        "seconds": round(time.perf_counter() - started, 1),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for case, figures in result["summary"]["cases"].items():
        line = ", ".join(f"{name} {f['speedup_vs_dense_fp32']:.2f}x" for name, f in figures.items()
                         if isinstance(f, dict))
        print(f"{case}: {line}; INT8 on top of compaction {figures['int8_gain_on_compacted']:.2f}x")
    for name, entry in exports.items():
        score = entry.get("metrics", {})
        print(f"{name}: {entry['file_mb']:.1f} MB, export {entry['export_seconds_whole_process']:.1f} s"
              + (f", {score}" if score else ""))
    print(f"written to {output}")
    return result


if __name__ == "__main__":
    main()
