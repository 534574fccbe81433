"""Dynamic against static INT8 on this machine: why `prunecli export` offers only dynamic quantization.

From one checkpoint: the float32 ONNX file and the dynamic INT8 one (`prunecli export`, per-channel QInt8), and a
static INT8 file made with onnxruntime's `quantize_static` (QDQ format, per-channel QInt8 weights and activations,
MatMuls only: LayerNorm, GELU, Softmax and the residual adds stay in float), calibrated on up to `--calibration`
real examples of the task's evaluation split (the checkpoint's recorded data or the data options; the speed does
not depend on which examples calibrate). Then the three files are timed in turns through onnxruntime (prunecli's
session settings) at batch 32 x 128 and 1 x 128, and compared with the float32 file on the calibration examples
(largest logit difference, argmax agreement; meaningful for a fine-tuned head only: a random head's logits are
nearly tied, so tiny changes flip its argmax).

    .venv/bin/python bench/bench_quantize.py --model ./dense_mrpc --data_dir ../shared/glue/MRPC
    # writes bench/results/quantize_static.json
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


def static_int8(fp32: Path, out: Path, rows: list[dict], names: list[str]) -> float:
    """quantize_static of `fp32` into `out`, calibrated on `rows` in batches of 8; returns the seconds it took."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from prunecli.inference.onnx import pad_batch

    class Rows(CalibrationDataReader):
        def __init__(self):
            self.batches = [pad_batch(rows[i:i + 8], names) for i in range(0, len(rows), 8)]

        def get_next(self):
            return self.batches.pop() if self.batches else None

    start = time.perf_counter()
    prepared = out.with_name("preprocessed.onnx")
    quant_pre_process(str(fp32), str(prepared), auto_merge=True)
    quantize_static(str(prepared), str(out), Rows(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    prepared.unlink()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    import numpy as np

    from prunecli.config import DataConfig
    from prunecli.inference.onnx import make_session, pad_batch
    from prunecli.inference.quantize import compare_logits
    from prunecli.models.loading import load_checkpoint_tokenizer, load_classifier
    from prunecli.pipelines.export import check_rows, export_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--work", default=str(BENCH / "work" / "quantize"))
    parser.add_argument("--output", default=str(BENCH / "results" / "quantize_static.json"))
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    for name in ("task_name", "data_dir", "validation_file"):
        parser.add_argument(f"--{name}", default=None)
    args = parser.parse_args(argv)
    work = Path(args.work)
    data = DataConfig(task_name=args.task_name, data_dir=args.data_dir, validation_file=args.validation_file)
    files = {"fp32": work / "fp32", "dynamic int8": work / "dynamic"}
    for name, folder in files.items():
        export_model(args.model, folder, quantize="int8" if "int8" in name else None, data=data, overwrite=True)
    model, _ = load_classifier(args.model)
    rows, described = check_rows(args.model, load_checkpoint_tokenizer(args.model, required=False), model, data,
                                 args.calibration)
    paths = {name: folder / "model.onnx" for name, folder in files.items()}
    paths["static int8"] = work / "static" / "model.onnx"
    paths["static int8"].parent.mkdir(parents=True, exist_ok=True)
    names = [i.name for i in make_session(paths["fp32"]).get_inputs()]
    static_seconds = static_int8(paths["fp32"], paths["static int8"], rows, names)
    sessions = {name: make_session(path, args.threads) for name, path in paths.items()}
    reference = sessions["fp32"]
    agreement = {name: compare_logits(lambda feeds: reference.run(["logits"], feeds)[0], session, rows)
                 for name, session in sessions.items() if name != "fp32"}
    rng = np.random.default_rng(0)
    vocab = int(model.config.vocab_size)
    result: dict = {"model": args.model, "checked_on": described, "static_quantize_seconds": static_seconds,
                    "file_mb": {n: round(p.stat().st_size / 1e6, 3) for n, p in paths.items()},
                    "agreement_with_fp32": agreement, "cases": {}}
    for batch in (32, 1):
        feeds = pad_batch([{"input_ids": rng.integers(0, vocab, 128).tolist()} for _ in range(batch)], names)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.rounds):  # the files take turns, so a slow spell reaches them all alike
            for name, session in sessions.items():
                session.run(["logits"], feeds)
                start = time.perf_counter()
                session.run(["logits"], feeds)
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
        result["cases"][f"b{batch} s128"] = {name: {"median_ms": ms, "speedup_vs_fp32": medians["fp32"] / ms}
                                             for name, ms in medians.items()}
    result["command"] = "bench/bench_quantize.py " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for case, figures in result["cases"].items():
        print(case, {name: f"{f['speedup_vs_fp32']:.2f}x" for name, f in figures.items()})
    print("agreement with fp32:", {n: a["argmax_agreement"] for n, a in agreement.items()}, "on", described)
    return result


if __name__ == "__main__":
    main()
