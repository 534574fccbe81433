"""Compaction figures from bench/results: exactness and speed (bench/bench_compact.py) and the accuracy against
speed-up curve of trained, compacted models (run_glue_bench.py --patterns hn33,... then bench_compact.py --curve).

One source for BENCHMARKS.md's compaction section and README.md's block between `<!-- compact:begin -->` and
`<!-- compact:end -->`. Pure Python on the JSONs; only measured numbers appear.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

BEGIN, END = "<!-- compact:begin (bench/render_results.py --readme) -->", "<!-- compact:end -->"
SPEED_FILE = "compact_speed.json"  # bench/bench_compact.py
CURVE_FILE = "compact_curve_speed.json"  # bench/bench_compact.py --curve PROFILE, under results/PROFILE/
CASE = "b32 s128"
INT8_SUFFIX = "-int8"  # the label of a compacted model's INT8 file in the curve's speed file (`--curve --int8`)
BACKENDS = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime"}
TASKS = {"mrpc": "MRPC", "sst2": "SST-2"}
METHODS = {"kd": "logit KD", "kdhid": "logit KD + hidden", "hidall": "all hidden", "cool": "lr to 0 in cool-down"}


def method(tool: str) -> str:
    """How a run was distilled, from its bench tool name (`prunecli` = INC's last-hidden-state MSE)."""
    _, *extra = tool.split("+")
    return ", ".join(METHODS.get(m, m) for m in extra) or "hidden MSE"
FLOOR = 0.9  # the goal: measured speed-up >= 0.9 x the encoder-FLOP ratio
DROP_GOAL = -0.01  # within 1% relative accuracy of the dense model
SPEED_GOAL = 2.0
#: Re-runs of `full` profile settings whose checkpoints are kept to be exported (`run_glue_bench.py --profile
#: deploy`), with their INT8 files timed by `bench_compact.py --curve deploy --int8`: the deployed curve.
DEPLOY_PROFILE = "deploy"
INT8_SPEED_GOAL = 5.0  # issue 30: a deployed INT8 file at >= 5x (onnxruntime, b32 x 128) within 1% of dense


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def flop_ratio(dense: dict, model: dict) -> float:
    """The encoder-FLOP ratio of two models of one `prunecli benchmark` result (dense over compacted)."""
    return dense["encoder_flops_per_example"] / model["encoder_flops_per_example"]


def speed_rows(results_dir: Path) -> list[dict]:
    """Per compacted one-shot model: logit difference, parameters, FLOP ratio, speed-ups at b32 x 128."""
    record = _read(Path(results_dir) / SPEED_FILE)
    if not record:
        return []
    models = record["benchmark"]["models"]
    dense, rows = models[0], []
    for model, (name, facts) in zip(models[1:], [(n, v) for n, v in record["variants"].items() if n != "dense"],
                                    strict=True):
        ratio = flop_ratio(dense, model)
        speed = {b: model["cases"][CASE][b]["speedup"] for b in BACKENDS if b in model["cases"][CASE]}
        rows.append({"name": name, "max_logit_difference": facts["max_logit_difference"],
                     "checked_on": facts["checked_on"], "params": model["params"], "dense_params": dense["params"],
                     "flop_ratio": ratio, "speedup": speed,
                     "floor_met": all(s / ratio >= FLOOR for s in speed.values())})
    return rows


NAMES = {"neuron": "half the neurons", "head": "half the heads", "mix": "both, + 4x1 on the rest"}


def speed_table(results_dir: Path) -> list[str]:
    rows = speed_rows(results_dir)
    if not rows:
        return ["Not measured yet: `.venv/bin/python bench/bench_compact.py`."]
    lines = ["| MiniLM, one-shot | params | max logit diff. | FLOPs | PyTorch | ONNX Runtime |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        speed = [f"{r['speedup'][b]:.2f}x ({r['speedup'][b] / r['flop_ratio']:.2f})" if b in r["speedup"] else "—"
                 for b in BACKENDS]
        lines.append(f"| {NAMES.get(r['name'], r['name'])} | {r['params'] / 1e6:.1f}M | "
                     f"{r['max_logit_difference']:.0e} | /{r['flop_ratio']:.2f} | {' | '.join(speed)} |")
    return lines


def curve_label(record: dict) -> str:
    """The name a compacted run's model has in the curve's speed file."""
    return f"{record['task']}-{record['pattern']}-{record['tool']}-s{record['seed']}"


def curve_rows(records: list[dict], results_dir: Path, profile: str = "full") -> list[dict]:
    """Per task, structured pattern and tool: mean accuracy of the compacted models over seeds, against the
    dense model of the same seeds, with the measured speed-ups (median over the seeds' compacted models)."""
    speed = _read(Path(results_dir) / profile / CURVE_FILE) or {}
    timed = {label: m for task in speed.get("tasks", {}).values()
             for label, m in zip(task["labels"], task["benchmark"]["models"], strict=True)}
    dense_by = {(r["task"], r["seed"]): r for r in records
                if r.get("profile") == profile and r.get("kind") == "dense" and r.get("metrics")}
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r.get("profile") == profile and r.get("kind") == "prune" and r.get("compact") and r.get("metrics"):
            groups.setdefault((r["task"], r["pattern"], r["tool"]), []).append(r)
    rows = []
    for (task, pattern, tool), runs in sorted(groups.items()):
        seeds = sorted(r["seed"] for r in runs)
        acc = statistics.fmean(r["metrics"]["accuracy"] for r in runs)
        labels = [curve_label(r) for r in runs]
        dense_of = {curve_label(r): dense_by[(task, r["seed"])]["metrics"]["accuracy"] for r in runs
                    if (task, r["seed"]) in dense_by}  # each compacted run's own seed's dense model
        dense_acc = statistics.fmean(dense_of.values()) if len(dense_of) == len(runs) else None
        int8 = _int8_figures(speed.get("tasks", {}).get(task, {}), timed, labels, dense_of)
        ratios, speeds = [], {b: [] for b in BACKENDS}
        for label in labels:
            model = timed.get(label)
            if model is None:
                continue
            base = speed["tasks"][task]["benchmark"]["models"][0]
            ratios.append(flop_ratio(base, model))
            for b in BACKENDS:
                figures = model["cases"].get(CASE, {}).get(b)
                if figures:
                    speeds[b].append(figures["speedup"])
        rows.append({"task": task, "pattern": pattern, "tool": tool, "seeds": seeds, "accuracy": acc,
                     "per_seed": {r["seed"]: r["metrics"]["accuracy"] for r in runs}, "dense": dense_acc,
                     "drop": None if dense_acc is None else (acc - dense_acc) / dense_acc,
                     "params": statistics.fmean(r["compact"]["params_after"] for r in runs),
                     "flop_ratio": statistics.median(ratios) if ratios else None,
                     "speedup": {b: statistics.median(v) for b, v in speeds.items() if v}, "int8": int8})
    return rows


def _int8_figures(task_speed: dict, timed: dict, labels: list[str], dense_of: dict[str, float]) -> dict | None:
    """The INT8 files of a group's compacted models (`bench_compact.py --curve --int8`): mean accuracy over the
    seeds that have one (through onnxruntime), its change against the dense models of those same seeds
    (`dense_of`: compacted label -> its seed's dense accuracy), and the median onnxruntime speed-up against the
    dense model of the same run. None when none was exported."""
    exported = task_speed.get("int8", {})
    scored = [label for label in labels if label in exported]
    speeds = [timed[label + INT8_SUFFIX]["cases"][CASE]["onnxruntime"]["speedup"] for label in labels
              if CASE in timed.get(label + INT8_SUFFIX, {}).get("cases", {})]
    if not scored:
        return None
    accuracy = statistics.fmean(exported[label]["metrics"]["accuracy"] for label in scored)
    dense = [dense_of[label] for label in scored if label in dense_of]
    dense_acc = statistics.fmean(dense) if len(dense) == len(scored) else None
    return {"accuracy": accuracy, "seeds": len(scored), "speedup": statistics.median(speeds) if speeds else None,
            "drop": None if dense_acc is None else (accuracy - dense_acc) / dense_acc}


def curve_table(records: list[dict], results_dir: Path, profile: str = "full", short: bool = False) -> list[str]:
    """The accuracy against speed-up table; `short` (the README's) leaves out the FLOP ratio and the dense
    accuracy (the relative change says how far from it)."""
    rows = curve_rows(records, results_dir, profile)
    if not rows:
        return ["Not measured yet: `run_glue_bench.py --patterns hn33,hn55,hn70`, then `bench_compact.py --curve`."]
    head = ["task", "heads, neurons removed", "params", "FLOPs", *BACKENDS.values(), "dense", "compacted", "vs dense"]
    if any(r["int8"] for r in rows):  # the INT8 files, where `bench_compact.py --curve --int8` measured them
        head += ["INT8 ORT, vs dense"] if short else ["INT8 ORT", "INT8", "INT8 vs dense"]
    if short:
        head = [h for h in head if h not in ("FLOPs", "dense")]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = {"task": TASKS.get(r["task"], r["task"]),
                 "heads, neurons removed": f"{int(r['pattern'][2:])}% ({method(r['tool'])})",
                 "params": f"{r['params'] / 1e6:.1f}M",
                 "FLOPs": f"/{r['flop_ratio']:.2f}" if r["flop_ratio"] else "—",
                 **{title: f"{r['speedup'][b]:.2f}x" if b in r["speedup"] else "not timed"
                    for b, title in BACKENDS.items()},
                 "dense": f"{r['dense']:.4f}" if r["dense"] is not None else "—",
                 "compacted": f"{r['accuracy']:.4f}, {len(r['seeds'])} seed{'s' if len(r['seeds']) > 1 else ''}",
                 "vs dense": f"{r['drop']:+.2%}" if r["drop"] is not None else "—",
                 **_int8_cells(r["int8"], len(r["seeds"]))}
        lines.append("| " + " | ".join(cells[h] for h in head) + " |")
    return lines


def _int8_cells(int8: dict | None, float_seeds: int) -> dict[str, str]:
    """The INT8 cells of a curve row; the short table's one cell names its seeds where fewer seeds have an INT8
    file than a float32 result (`float_seeds`)."""
    if not int8:
        return {"INT8 ORT": "—", "INT8": "—", "INT8 vs dense": "—", "INT8 ORT, vs dense": "—"}
    speed = f"{int8['speedup']:.2f}x" if int8["speedup"] is not None else "not timed"
    drop = f"{int8['drop']:+.2%}" if int8["drop"] is not None else "—"
    seeds = f"{int8['seeds']} seed{'s' if int8['seeds'] > 1 else ''}"
    short = f"{speed}, {drop}" + (f" ({seeds})" if int8["seeds"] != float_seeds else "")
    return {"INT8 ORT": speed, "INT8": f"{int8['accuracy']:.4f}, {seeds}", "INT8 vs dense": drop,
            "INT8 ORT, vs dense": short}


def goal_lines(records: list[dict], results_dir: Path) -> list[tuple[str, str, bool | None]]:
    """(goal, measured, met) for the compaction goals."""
    goals: list[tuple[str, str, bool | None]] = []
    rows = speed_rows(results_dir)
    if rows:
        worst = max(r["max_logit_difference"] for r in rows)
        goals.append(("compacted logits = sparse logits within 1e-4 on MRPC dev (neuron, head, both)",
                      f"max {worst:.1e}", worst <= 1e-4))
        floor = min(s / r["flop_ratio"] for r in rows for s in r["speedup"].values())
        goals.append((f"speed-up >= {FLOOR} x encoder-FLOP ratio at batch 32 x 128 (PyTorch, ONNX Runtime)",
                      f"lowest {floor:.2f}", floor >= FLOOR))
    rows_of_curve = curve_rows(records, results_dir)
    for task in TASKS:
        curve = [r for r in rows_of_curve if r["task"] == task and r["drop"] is not None]
        if not curve:
            continue
        title = f"{TASKS[task]}: compacted at >= {SPEED_GOAL:g}x (PyTorch, b32 x 128) within 1% of dense"
        if not any("pytorch" in r["speedup"] for r in curve):
            goals.append((title, "trained, speed not timed yet (`bench_compact.py --curve full`)", None))
            continue
        curve = [r for r in curve if "pytorch" in r["speedup"]]
        fast = [r for r in curve if r["speedup"]["pytorch"] >= SPEED_GOAL]
        best = max(fast, key=lambda r: r["drop"]) if fast else max(curve, key=lambda r: r["speedup"].get("pytorch", 0))
        measured = (f"{best['speedup'].get('pytorch', 0):.2f}x at {best['drop']:+.2%} "
                    f"({len(best['seeds'])} seed{'s' if len(best['seeds']) > 1 else ''})")
        goals.append((title, measured, bool(fast) and best["drop"] >= DROP_GOAL))
    rows_deployed = rows_of_curve + curve_rows(records, results_dir, DEPLOY_PROFILE)
    for task in TASKS:
        deployed = [r for r in rows_deployed if r["task"] == task and r["int8"] and r["int8"]["speedup"] is not None
                    and r["int8"]["drop"] is not None]
        if not deployed:
            continue
        title = (f"{TASKS[task]}: INT8 file at >= {INT8_SPEED_GOAL:g}x (onnxruntime, b32 x 128, vs dense fp32) "
                 "within 1% of dense")
        fast = [r for r in deployed if r["int8"]["speedup"] >= INT8_SPEED_GOAL]
        best = max(fast or deployed, key=lambda r: r["int8"]["drop"] if fast else r["int8"]["speedup"])["int8"]
        goals.append((title, f"{best['speedup']:.2f}x at {best['drop']:+.2%} ({best['seeds']} seed"
                      f"{'s' if best['seeds'] > 1 else ''})", bool(fast) and best["drop"] >= DROP_GOAL))
    return goals


def readme_block(records: list[dict], results_dir: Path) -> str:
    return "\n".join([BEGIN, *curve_table(records, results_dir, DEPLOY_PROFILE, short=True), END])


def section(records: list[dict], results_dir: Path) -> list[str]:
    """BENCHMARKS.md's compaction section."""
    record = _read(Path(results_dir) / SPEED_FILE) or {}
    lines = ["## Compaction: exactness, speed, and accuracy against speed-up", "",
             "Exactness and speed on all-MiniLM-L6-v2 with one-shot magnitude pruning (speed depends on shapes "
             "only), compacted with the logits checked on the whole MRPC dev set; speed-ups at batch 32 x 128 "
             "tokens against the dense model in the same `prunecli benchmark` run (in brackets: the share of the "
             "encoder-FLOP ratio). Command: `" + record.get("command", ".venv/bin/python bench/bench_compact.py")
             + "`.", "", *speed_table(results_dir), "",
             "Accuracy against speed-up: all-MiniLM-L6-v2 fine-tuned on GLUE, then heads and neurons pruned "
             "(`recipes/heads_neurons.json`, the share as `--target_sparsity`) with the reference's schedule "
             "sizes, compacted (`--compact`); accuracy of the compacted model on GLUE dev, speed-ups measured "
             "afterwards with the machine to itself (`bench/bench_compact.py --curve full`).", "",
             *curve_table(records, results_dir), ""]
    lines += _per_seed_lines(curve_rows(records, results_dir))
    deployed = curve_rows(records, results_dir, DEPLOY_PROFILE)
    if deployed:
        lines += ["", "The deployed files, float32 and INT8 side by side (profile `deploy`: the `full` profile's "
                  "settings re-run to keep the checkpoints, each compacted model exported with `prunecli export "
                  "--quantize int8`, scored with `prunecli evaluate` on the file and timed in onnxruntime against "
                  "the dense float32 model of the same run: `bench/bench_compact.py --curve deploy --int8`). "
                  "INT8 accuracy is compared with the dense models of the seeds that have an INT8 file.", "",
                  *curve_table(records, results_dir, DEPLOY_PROFILE), "", *_per_seed_lines(deployed)]
    return lines + [""]


def _per_seed_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        per_seed = ", ".join(f"s{s} {a:.4f}" for s, a in sorted(r["per_seed"].items()))
        lines.append(f"- {TASKS.get(r['task'], r['task'])} {r['pattern']} ({r['tool']}): {per_seed}")
    return lines
