"""Which attention the ONNX export should trace: sdpa (the model's own) against eager, float32 and INT8.

Each checkpoint given (e.g. a dense and a compacted MiniLM) is exported twice with prunecli's exporter, once
tracing sdpa attention and once eager (`export_onnx(..., attention=...)`), and each file is quantized the way
`prunecli export --quantize int8` does it. All files are then timed in ONE process through onnxruntime
(prunecli's session settings), taking turns round by round, at batch 32 x 128 and 1 x 128 (random ids, full
masks; fewer tokens if a model has fewer positions). Reported per checkpoint: the median latency of each file,
eager's speed-up over sdpa, and the INT8 gain (float32 / INT8 latency) under each export; plus the count of
`Where` and `IsNaN` nodes in each graph.

    .venv/bin/python bench/bench_attention.py DENSE COMPACTED   # writes bench/results/export_attention.json

Take the timings with the machine to yourself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
ATTENTIONS = ("sdpa", "eager")


def export_pair(model_dir: Path, work: Path) -> dict[str, Path]:
    """{"sdpa fp32", "sdpa int8", "eager fp32", "eager int8"} -> file, exported and quantized under `work`."""
    from prunecli.inference.onnx import export_onnx
    from prunecli.inference.quantize import quantize_int8

    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for attention in ATTENTIONS:
        fp32 = export_onnx(str(model_dir), work / f"{attention}-fp32.onnx", attention=attention)
        quantize_int8(fp32, work / f"{attention}-int8.onnx")
        files[f"{attention} fp32"], files[f"{attention} int8"] = fp32, work / f"{attention}-int8.onnx"
    return files


def node_counts(path: Path) -> dict[str, int]:
    import onnx

    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    return {op: ops.count(op) for op in ("Where", "IsNaN")}


def main(argv: list[str] | None = None) -> dict:
    import numpy as np

    from prunecli.inference.onnx import make_session, pad_batch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="checkpoint folders")
    parser.add_argument("--work", default=str(BENCH / "work" / "attention"))
    parser.add_argument("--output", default=str(BENCH / "results" / "export_attention.json"))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    files = {f"{i}:{name}": path for i, model in enumerate(args.models)
             for name, path in export_pair(Path(model), Path(args.work) / f"m{i}").items()}
    sessions = {key: make_session(path, args.threads) for key, path in files.items()}
    names = {key: [i.name for i in s.get_inputs()] for key, s in sessions.items()}
    rng = np.random.default_rng(0)
    configs = [json.loads((Path(m) / "config.json").read_text()) for m in args.models]
    vocab = min(c["vocab_size"] for c in configs)
    length = min([128] + [c.get("max_position_embeddings", 128) for c in configs])
    times: dict[str, dict[str, list[float]]] = {}
    for batch in (32, 1):
        rows = [{"input_ids": rng.integers(min(1000, vocab // 2), vocab, length).tolist()} for _ in range(batch)]
        feeds = {key: pad_batch(rows, names[key]) for key in sessions}  # built once, outside the timed turns
        case = times.setdefault(f"b{batch} s{length}", {key: [] for key in sessions})
        for _ in range(args.rounds if batch == 32 else 10 * args.rounds):  # turns: a slow spell reaches all
            for key, session in sessions.items():
                session.run(["logits"], feeds[key])
                start = time.perf_counter()
                session.run(["logits"], feeds[key])
                case[key].append(time.perf_counter() - start)
    result: dict = {"command": "bench/bench_attention.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "models": {}}
    for i, model in enumerate(args.models):
        entry: dict = {"checkpoint": model, "nodes": {}, "cases": {}}
        for attention in ATTENTIONS:
            entry["nodes"][attention] = node_counts(files[f"{i}:{attention} fp32"])
        for case, by_key in times.items():
            ms = {key.split(":", 1)[1]: statistics.median(t) * 1000 for key, t in by_key.items()
                  if key.startswith(f"{i}:")}
            entry["cases"][case] = {
                "median_ms": ms,
                "eager_over_sdpa": {p: ms[f"sdpa {p}"] / ms[f"eager {p}"] for p in ("fp32", "int8")},
                "int8_gain": {a: ms[f"{a} fp32"] / ms[f"{a} int8"] for a in ATTENTIONS},
            }
            print(f"{model} {case}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
                  + f"; int8 gain sdpa {entry['cases'][case]['int8_gain']['sdpa']:.2f}x, eager "
                  f"{entry['cases'][case]['int8_gain']['eager']:.2f}x")
        result["models"][model] = entry
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
