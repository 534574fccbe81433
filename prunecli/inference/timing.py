"""Timing calls for `prunecli benchmark`: warm-up, at least N runs and T seconds, caps, rounds, percentiles;
the machine facts recorded beside them (versions, load average, usable CPUs).

`time_round(call, batches, timing, sizes)` times one round of one model; `benchmark_models` takes each model's
runs in `timing.rounds` turns (`Timing.round(i)` is the share of round i) and merges them with `summarize`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from prunecli.errors import UserError


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long each case is timed."""

    warmup: int = 3  # untimed calls first
    min_runs: int = 20  # at least this many timed calls ...
    min_time: float = 2.0  # ... and at least this many seconds, whichever takes longer
    max_time: float = 30.0  # cap: stop after this many seconds (with at least one timed call) ...
    max_runs: int = 10_000  # ... or this many calls
    rounds: int = 3  # the runs are taken in this many turns, the models of a case alternating

    def check(self) -> None:
        if self.warmup < 0 or self.min_runs < 1 or self.max_runs < 1 or self.rounds < 1:
            raise UserError(f"bad timing settings: warmup {self.warmup}, repeats {self.min_runs}, max runs "
                            f"{self.max_runs}, rounds {self.rounds}.",
                            hint="--warmup >= 0, --repeats >= 1 and --rounds >= 1.")
        if self.min_time < 0 or self.max_time <= 0:
            raise UserError(f"bad timing settings: min time {self.min_time} s, max time {self.max_time} s.",
                            hint="--min_time >= 0 and --max_time > 0 (seconds).")

    def round(self, index: int) -> Timing:
        """The share of round `index` of `rounds`: all the warm-up first, one untimed call in later rounds."""
        share = self.rounds
        return dataclasses.replace(self, warmup=self.warmup if index == 0 else min(self.warmup, 1),
                                   min_runs=-(-self.min_runs // share), min_time=self.min_time / share,
                                   max_time=self.max_time / share, max_runs=-(-self.max_runs // share), rounds=1)


def time_round(call: Callable[[Any], Any], batches: Sequence[Any], timing: Timing, sizes: Sequence[int],
               needed: int | None = None) -> dict[str, Any]:
    """One round: the warm-up, then timed calls cycling over `batches`, stopping only after whole passes (so
    every batch is timed equally often and models compare the same mix); its raw times. The caps may stop
    it inside a pass (`capped`)."""
    for i in range(timing.warmup):
        call(batches[i % len(batches)])
    needed = max(timing.min_runs, len(batches)) if needed is None else needed
    times: list[float] = []
    examples = 0
    capped = False
    start = time.perf_counter()
    while True:
        i = len(times) % len(batches)
        t0 = time.perf_counter()
        call(batches[i])
        times.append(time.perf_counter() - t0)
        examples += sizes[i]
        elapsed = time.perf_counter() - start
        if len(times) >= needed and elapsed >= timing.min_time and len(times) % len(batches) == 0:
            break
        if len(times) >= timing.max_runs or elapsed >= timing.max_time:
            capped = True
            break
    return {"times": times, "examples": examples, "capped": capped}


def summarize(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Latency and throughput figures of the raw times of one or more rounds."""
    times = [t for r in rounds for t in r["times"]]
    examples = sum(r["examples"] for r in rounds)
    total = sum(times)
    ordered = sorted(times)
    return {
        "median_ms": statistics.median(times) * 1e3, "p90_ms": _percentile(ordered, 0.9) * 1e3,
        "mean_ms": total / len(times) * 1e3, "min_ms": ordered[0] * 1e3,
        "examples_per_s": examples / total if total > 0 else float("inf"), "runs": len(times),
        "examples": examples, "total_s": total, "capped": any(r["capped"] for r in rounds),
        "rounds": len(rounds),
    }


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default), on sorted values."""
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---- the benchmark --------------------------------------------------------------------------------------


def versions() -> dict[str, str | None]:
    """Versions of Python, prunecli and the packages a measurement depends on (None: not installed)."""
    from importlib import metadata

    import prunecli

    out: dict[str, str | None] = {"python": platform.python_version(), "prunecli": prunecli.__version__}
    for name in ("torch", "transformers", "onnxruntime", "onnx", "onnxscript", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not on Windows
        return None


def usable_cpus() -> int | None:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count()
