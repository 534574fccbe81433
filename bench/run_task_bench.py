"""SQuAD v1.1 and CoNLL-2003 with all-MiniLM-L6-v2: the commands of issue 31's measurements, by profile.

Each profile names its data sizes; every run is one `prunecli` command, written out in full so a table can
quote it. Runs of a profile: `dense` (fine-tune), `2:4` and `4x1` (prune the dense model with logit
distillation from it), `units` (heads + neurons, `recipes/heads_neurons.json`, then `--compact`) and `speed`
(`prunecli benchmark` of dense against the compacted model at the task's shape: batch 32 x 384 for SQuAD,
32 x 128 for CoNLL).

    python bench/run_task_bench.py --profile squad-cpu-8k --print           # the commands, nothing run
    python bench/run_task_bench.py --profile squad-cpu-8k --runs dense,2:4  # run them (resumable: a run whose
                                                                            # eval_results.json exists is skipped)
    python bench/run_task_bench.py --profile squad-cpu-8k --collect         # bench/results/tasks/<profile>.json
                                                                            # (runs recorded there whose folders
                                                                            # are gone are kept)
    python bench/run_task_bench.py --profile squad-cpu-8k --render          # markdown tables, INC's rows

`--save_every N` saves resumable state every N optimizer steps (keeping the newest only), and a run whose folder
holds such a state and no eval_results.json continues from it (`--resume_from_checkpoint latest`): an hours-long
SQuAD run survives a stopped session, and can be restarted with other thread settings. The recorded command is
the run's recipe; these options do not change what it trains.

Settings are screened on held-out training data, never on dev: `--holdout 0.1` holds a tenth of the training
sentences (CoNLL) or articles (SQuAD) out as the dev set, under the profile `<name>-holdout0.1`, and a pruned
run takes levers after `+` (`LEVERS`: `2:4+hidden+long`, `2:4+lr5e-5`):

    python bench/run_task_bench.py --profile conll-full --holdout 0.1 --runs dense,2:4,2:4+hidden,2:4+long

Profiles (`PROFILES`): `squad-cpu-8k-screen` (a fixed training subset of 8,000 questions, seed 42, scored on
the first 1,000 dev questions: for choosing settings), `squad-cpu-8k` (the same training, the full dev set of
10,570 questions: the final figures), `conll-full` (all 14,041 training sentences, the 3,250 dev sentences),
and `smoke-*` (a few examples, to check the chain end to end). The data is read in place from ../shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.task_holdout import holdout_folder  # noqa: E402
from prunecli.training.checkpoint import list_resumable, write_file_atomic  # noqa: E402

SHARED = Path(os.environ.get("PRUNECLI_SHARED_DIR", REPO.parent / "shared"))  # set it in a git worktree
MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Profile:
    """A task's data, sizes and training settings: every run of the profile uses them."""

    name: str
    task: str  # squad or conll2003
    data_dir: Path
    max_train_samples: int | None
    max_eval_samples: int | None
    dense_epochs: int
    prune_epochs: int
    learning_rate: float
    prune_learning_rate: float
    batch_size: int = 16
    distill_loss_weight: float = 1.0
    extra: tuple[str, ...] = field(default_factory=tuple)  # task options (windows, lengths)
    holdout: float | None = None  # set by --holdout: the dev set is this share of the training data
    prune_extra: tuple[str, ...] = field(default_factory=tuple)  # options of the pruned runs only

    @property
    def timing_length(self) -> int:
        return 384 if self.task == "squad" else 128


_SQUAD = ("--max_seq_length", "384", "--doc_stride", "128")
_CONLL = ("--max_length", "128")
PROFILES = {p.name: p for p in (
    # SQuAD on 2 CPU cores: 2 dense and 3 pruning epochs of 8,000 questions keep the four runs near 6 hours
    Profile("squad-cpu-8k-screen", "squad", SHARED / "squad", 8000, 1000, 2, 3, 1e-4, 1e-4, extra=_SQUAD),
    # the pruned runs evaluate the full dev set once, at the end (each evaluation costs ~a third of an epoch)
    Profile("squad-cpu-8k", "squad", SHARED / "squad", 8000, None, 2, 3, 1e-4, 1e-4, extra=_SQUAD,
            prune_extra=("--no_eval_each_epoch",)),
    Profile("conll-full", "conll2003", SHARED / "conll2003", None, None, 3, 4, 1e-4, 1e-4, extra=_CONLL),
    Profile("smoke-squad", "squad", SHARED / "squad", 64, 32, 1, 1, 1e-4, 1e-4, batch_size=8, extra=_SQUAD),
    Profile("smoke-conll", "conll2003", SHARED / "conll2003", 64, 32, 1, 1, 1e-4, 1e-4, batch_size=8,
            extra=_CONLL),
)}
#: The pruned runs: (pattern options, extra options).
PRUNED = {
    "2:4": ("--pruning_pattern", "2:4", "--target_sparsity", "0.5"),
    "4x1": ("--pruning_pattern", "4x1", "--target_sparsity", "0.8"),
    # 55%: on GLUE, 2.1x (PyTorch) at batch 32 x 128; 50% gave 1.94x at 32 x 384 in the smoke-squad run
    "units": ("--recipe", str(REPO / "recipes" / "heads_neurons.json"), "--target_sparsity", "0.55", "--compact"),
}
RUNS = ("dense", *PRUNED, "speed")
#: Levers for accuracy, added to a pruned run's name with `+` (`2:4+hidden+long`), for settings screened on a
#: held-out split (`--holdout`): `long` doubles the pruning epochs (the cool-down stays one epoch), `hidden` adds
#: the hidden-state MSE of every layer to the logit distillation, `cosine` lowers the learning rate to 0 over the
#: cool-down, `lr<value>` sets the pruning learning rate, `cool<N>` keeps N epochs of cool-down at full sparsity instead
#: of one (the run grows by N - 1 epochs, so the pruning ramp is unchanged).
LEVERS = {"long": (), "hidden": ("--distill_hidden_weight", "1", "--distill_hidden_layers", "all"),
          "cosine": ("--cooldown_lr_decay", "cosine")}
_LEVER_FORMS = ", ".join((*LEVERS, "lr<value>", "cool<epochs>"))


def parse_run(run: str) -> tuple[str, list[str]]:
    """A run name's base run and its levers; ValueError names what is unknown."""
    base, *levers = run.split("+")
    if base not in RUNS or (levers and base not in PRUNED):
        raise ValueError(f"unknown run {run!r}; runs: {', '.join(RUNS)}, a pruned one with +levers "
                         f"({_LEVER_FORMS})")
    for lever in levers:
        if lever not in LEVERS and not _learning_rate(lever) and not _cooldown(lever):
            raise ValueError(f"unknown lever {lever!r} in {run!r}; levers: {_LEVER_FORMS}")
    return base, levers


def _learning_rate(lever: str) -> str | None:
    if not lever.startswith("lr"):
        return None
    try:
        return str(float(lever[2:]))
    except ValueError:
        return None


def _cooldown(lever: str) -> int | None:
    """`cool<N>`'s epochs (a whole number of at least 1), else None."""
    if not lever.startswith("cool") or not lever[4:].isdigit() or int(lever[4:]) < 1:
        return None
    return int(lever[4:])


def holdout_profile(profile: Profile, share: float, workdir: Path) -> Profile:
    """The profile screened on held-out training data: its own name and data folder; its subset sizes are kept
    (`squad-cpu-8k-screen` scores the first 1,000 held-out questions)."""
    return replace(profile, name=f"{profile.name}-holdout{share:g}", holdout=share,
                   data_dir=workdir / "data" / f"{profile.task}-holdout{share:g}")


def run_dir(profile: Profile, workdir: Path, run: str) -> Path:
    return workdir / profile.name / run.replace(":", "in")


def command(profile: Profile, run: str, workdir: Path, prunecli: str = "prunecli") -> list[str]:
    """The full command line of one run of a profile."""
    base, levers = parse_run(run)
    dense = run_dir(profile, workdir, "dense")
    if run == "speed":
        return [prunecli, "benchmark", str(dense), str(run_dir(profile, workdir, "units") / "compact"),
                "--batch_sizes", "32", "--sequence_length", str(profile.timing_length), "--output",
                str(run_dir(profile, workdir, "speed") / "benchmark.json")]
    data = ["--task_name", profile.task, "--data_dir", str(profile.data_dir), *profile.extra, "--seed", "42"]
    if profile.max_train_samples:
        data += ["--max_train_samples", str(profile.max_train_samples)]
    if profile.max_eval_samples:
        data += ["--max_eval_samples", str(profile.max_eval_samples)]
    train = ["--per_device_train_batch_size", str(profile.batch_size), "--per_device_eval_batch_size", "64",
             "--output_dir", str(run_dir(profile, workdir, run))]
    if run == "dense":
        return [prunecli, "finetune", "--model_name_or_path", MODEL, *data, *train, "--learning_rate",
                str(profile.learning_rate), "--num_train_epochs", str(profile.dense_epochs), "--num_warmup_steps",
                "100"]
    rate = next(filter(None, map(_learning_rate, levers)), None)
    cooldown = next(filter(None, map(_cooldown, levers)), 1)
    epochs = profile.prune_epochs * (2 if "long" in levers else 1) + cooldown - 1
    lever_options = [option for lever in levers for option in LEVERS.get(lever, ())]
    return [prunecli, "prune", "--model_name_or_path", str(dense), *data, *train, "--learning_rate",
            rate or str(profile.prune_learning_rate), "--num_train_epochs", str(epochs), "--cooldown_epochs",
            str(cooldown), "--distill_type", "logits_kl", "--distill_loss_weight", str(profile.distill_loss_weight),
            *PRUNED[base], *profile.prune_extra, *lever_options]


#: What a finished run records beside its command.
RECORDED = ("metrics", "train_seconds", "compact_report", "benchmark")


def portable(cmd: str) -> str:
    """A recorded command as it reads from the repository's root with the data beside it in ../shared: no
    machine's absolute paths in bench/results."""
    return cmd.replace(str(SHARED), "../shared").replace(f"{REPO}{os.sep}", "")


def collect(profile: Profile, workdir: Path, recorded: dict | None = None) -> dict:
    """Every finished run's metrics, command and training time, and the benchmark's speed-up. `recorded` (the
    profile's earlier results) keeps the runs whose folders are gone (bench/work does not outlive a machine),
    where the command is the same; a run found in the workdir replaces its record."""
    runs = {}
    found = sorted("2:4" + f.name[4:] if f.name.startswith("2in4") else f.name
                   for f in (workdir / profile.name).glob("*+*") if f.is_dir())
    for run in (*RUNS, *(r for r in found if _is_run(r))):
        folder = run_dir(profile, workdir, run)
        entry: dict = {"command": portable(shlex.join(command(profile, run, workdir)))}
        if (folder / "eval_results.json").is_file():
            entry["metrics"] = json.loads((folder / "eval_results.json").read_text())
            if (folder / "train_results.json").is_file():
                entry["train_seconds"] = json.loads((folder / "train_results.json").read_text()).get("train_seconds")
        if (folder / "compact" / "compact_report.json").is_file():
            entry["compact_report"] = json.loads((folder / "compact" / "compact_report.json").read_text())
        if (folder / "benchmark.json").is_file():
            entry["benchmark"] = json.loads((folder / "benchmark.json").read_text())
        runs[run] = entry
    for run, before in ((recorded or {}).get("runs") or {}).items():
        recorded_command = portable(before.get("command") or "")
        entry = runs.setdefault(run, {"command": recorded_command})
        if entry["command"] == recorded_command and not any(k in entry for k in RECORDED):
            entry.update({k: before[k] for k in RECORDED if k in before})
    return {"profile": profile.name, "task": profile.task, "model": MODEL,
            "max_train_samples": profile.max_train_samples, "max_eval_samples": profile.max_eval_samples,
            "holdout": profile.holdout, "runs": json.loads(portable(json.dumps(runs)))}


def _is_run(name: str) -> bool:
    try:
        parse_run(name)
    except ValueError:
        return False
    return True


#: INC's published SQuAD v1.1 F1 (snip-momentum with distillation, from fine-tuned dense models), for scale.
INC_SQUAD = (("BERT-mini", "4x1, 80%", 0.7662, 0.7617), ("BERT-mini", "2:4", 0.7662, 0.7733),
             ("DistilBERT", "4x1, 80%", 0.8690, 0.8615), ("DistilBERT", "2:4", 0.8690, 0.8731))
#: Issue 31's goals: the largest relative F1 loss against dense, and the least speed-up (units only).
GOALS = {"2:4": (0.01, None), "4x1": (0.03, None), "units": (0.02, 2.0)}


def _speedup(entry: dict, backend: str) -> float | None:
    models = (entry.get("benchmark") or {}).get("models") or []
    if len(models) < 2:
        return None
    cases = models[1].get("cases") or {}
    for case in cases.values():
        if backend in case and case[backend].get("speedup") is not None:
            return float(case[backend]["speedup"])
    return None


#: The columns of `table_rows`, as the BENCHMARKS.md table heads them.
COLUMNS = ("profile", "run", "exact match", "F1", "vs dense", "goal", "met", "PyTorch", "ONNX Runtime")


def table_rows(results: list[dict]) -> list[list[str]]:
    """One row of cells (`COLUMNS`) per finished run of the collected profiles: F1 against dense, the goal,
    the compacted model's speed-up."""
    rows = []
    for result in results:
        runs = result["runs"]
        dense = (runs.get("dense", {}).get("metrics") or {}).get("f1")
        speed = runs.get("speed", {})
        order = ("dense", *PRUNED)
        for run in sorted((r for r in runs if _is_run(r) and r != "speed"),
                          key=lambda r: (order.index(parse_run(r)[0]), r)):
            metrics = runs.get(run, {}).get("metrics")
            if not metrics:
                continue
            base = parse_run(run)[0]
            f1, em = metrics.get("f1"), metrics.get("exact_match")
            delta = (f1 - dense) / dense if dense and run != "dense" else None
            loss, least = GOALS.get(base, (None, None))
            up, onnx = (_speedup(speed, "pytorch"), _speedup(speed, "onnxruntime")) if run == "units" else (None, None)
            if result.get("holdout"):  # a screen on held-out training data: the goals are for the dev set
                loss = least = None
            goal = "" if loss is None else f"within {loss:.0%}" + (f", {least:g}x" if least else "")
            met = "" if loss is None or delta is None else (
                "yes" if delta >= -loss and (least is None or (up or 0) >= least) else "no")
            rows.append([result["profile"], run, "" if em is None else f"{em:.4f}", f"{f1:.4f}",
                         "" if delta is None else f"{delta:+.2%}", goal, met,
                         "" if up is None else f"{up:.2f}x", "" if onnx is None else f"{onnx:.2f}x"])
    return rows


def markdown_table(head: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


#: README.md's block of task figures, rendered by bench/render_results.py --readme.
README_BEGIN, README_END = "<!-- tasks:begin (bench/render_results.py --readme) -->", "<!-- tasks:end -->"


def readme_block(results: list[dict]) -> str:
    """README.md's table: the profiles of the final figures (no held-out screens, no smoke runs), each pattern's
    run as the profile defines it and, of its variants with levers, only the best scored (BENCHMARKS.md has all)."""
    final = [{**r, "runs": _best_levers(r["runs"])} for r in results
             if not r.get("holdout") and not r["profile"].startswith("smoke")]
    if not any(run.get("metrics") for r in final for run in r["runs"].values()):
        return "\n".join([README_BEGIN, "Not measured yet: `bench/run_task_bench.py` (docs/tasks.md).", README_END])
    picked = [COLUMNS.index(c) for c in ("profile", "run", "F1", "exact match", "vs dense", "PyTorch")]
    rows = [[row[i] for i in picked] for row in table_rows(final)]
    table = markdown_table(("profile", "run", "F1", "EM", "vs dense", "speed-up"), rows)
    return "\n".join([README_BEGIN, *table, README_END])


def _best_levers(runs: dict) -> dict:
    """`runs` without the lever variants (`2:4+long`) that score below another variant of the same run."""
    def f1(name: str) -> float:
        return (runs[name].get("metrics") or {}).get("f1", float("-inf"))

    best = {}
    for name in runs:
        base = name.split("+", 1)[0]
        if "+" in name and (base not in best or f1(name) > f1(best[base])):
            best[base] = name
    return {name: run for name, run in runs.items() if "+" not in name or best[name.split("+", 1)[0]] == name}


def render(results: list[dict]) -> str:
    """Markdown tables of collected profiles, then INC's published SQuAD figures for scale."""
    lines = markdown_table(COLUMNS, table_rows(results))
    lines += ["", "INC 2.x's published SQuAD v1.1 F1, for scale:", "",
              "| model | pattern | dense | sparse |", "| --- | --- | --- | --- |"]
    lines += [f"| {m} | {p} | {d:.4f} | {q:.4f} |" for m, p, d, q in INC_SQUAD]
    return "\n".join(lines) + "\n"


def resume_options(folder: Path, save_every: int | None) -> list[str]:
    """The options that make a run resumable (`save_every`) and continue one stopped part-way in `folder`."""
    options = ["--checkpointing_steps", str(save_every), "--checkpoints_total_limit", "1"] if save_every else []
    if list_resumable(folder):
        options += ["--resume_from_checkpoint", "latest"]
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, choices=sorted(PROFILES))
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--workdir", default=str(REPO / "bench" / "work" / "tasks"))
    parser.add_argument("--prunecli", default=f"{sys.executable} -m prunecli", help="how to call prunecli")
    parser.add_argument("--holdout", type=float, default=None, metavar="SHARE",
                        help="screen settings: hold this share of the training data out as the dev set "
                             "(profile <name>-holdout<SHARE>; whole sentences / articles, seed 0)")
    parser.add_argument("--save_every", type=int, default=None, metavar="STEPS",
                        help="save resumable state every STEPS optimizer steps; a run stopped part-way "
                             "continues from it when started again")
    parser.add_argument("--print", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--collect", action="store_true", help="write bench/results/tasks/<profile>.json")
    parser.add_argument("--render", action="store_true", help="print the tables of bench/results/tasks/*.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    profile, workdir = PROFILES[args.profile], Path(args.workdir)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    for run in runs:
        try:
            parse_run(run)
        except ValueError as err:
            raise SystemExit(f"--runs: {err}") from None
    if args.holdout is not None:
        if not 0 < args.holdout < 1:
            raise SystemExit(f"--holdout {args.holdout:g}: a share in (0, 1), e.g. 0.1")
        profile = holdout_profile(profile, args.holdout, workdir)
        if not (args.print or args.collect or args.render):
            made = holdout_folder(profile.task, PROFILES[args.profile].data_dir, profile.data_dir, args.holdout)
            print(f"# held-out folder {profile.data_dir}: {json.dumps(made['counts'])}", flush=True)
    if args.render:
        files = sorted((REPO / "bench" / "results" / "tasks").glob("*.json"))
        print(render([json.loads(f.read_text()) for f in files]), end="")
        return 0
    if args.collect:
        target = REPO / "bench" / "results" / "tasks" / f"{profile.name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        recorded = json.loads(target.read_text()) if target.is_file() else None
        write_file_atomic(target, json.dumps(collect(profile, workdir, recorded), indent=2) + "\n")
        print(target)
        return 0
    if args.save_every is not None and args.save_every < 1:
        raise SystemExit(f"--save_every {args.save_every}: a number of optimizer steps, at least 1")
    for run in runs:
        argv_run = command(profile, run, workdir, prunecli="prunecli")
        folder = run_dir(profile, workdir, run)
        print(shlex.join(argv_run), flush=True)
        done = folder / ("benchmark.json" if run == "speed" else "eval_results.json")
        if args.print or done.is_file():
            continue
        extra = [] if run == "speed" else resume_options(folder, args.save_every)
        cmd = [*shlex.split(args.prunecli), *argv_run[1:], *extra]
        if extra:
            print(f"# {run}: {shlex.join(extra)}", flush=True)
        (folder if run == "speed" else folder.parent).mkdir(parents=True, exist_ok=True)  # prunecli makes its own
        start = time.perf_counter()
        code = subprocess.call(cmd, cwd=REPO)
        print(f"# {run}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
