"""`prunecli benchmark MODEL [MODEL ...]`: inference latency, throughput, size and FLOPs of models side by side.

The measuring is `prunecli.inference.benchmark.benchmark_models`; this module turns options into its arguments
and renders the result: one timing table (one row per case and model; per backend, median and p90 latency,
throughput and the speed-up against the first model), laid out to fit `console.width` (both backends side by
side when there is room, else one table per backend, else fewer columns), then a small table of per-model facts
(parameters, FLOPs, file size). `--json` prints only the result's JSON on stdout; `--output` writes it to a file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prunecli.cli.options import DATA, DataDir, DocStride, MaxLength, MaxSeqLength, TaskName, ValidationFile, _opt
from prunecli.config import DataConfig
from prunecli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

NAME = "benchmark"
BENCH = "Benchmark"
_DATA_EXAMPLES = 256


def command(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Model folders (any sequence classifier: dense, sparse or compacted), exported ONNX "
                       "folders (prunecli export; onnxruntime only) or the alias minilm; the first is the speed-up "
                       "baseline.", show_default=False),
    ] = None,
    task_name: TaskName = None,
    data_dir: DataDir = None,
    validation_file: ValidationFile = None,
    max_length: MaxLength = DataConfig().max_length,
    max_seq_length: MaxSeqLength = DataConfig().max_seq_length,
    doc_stride: DocStride = DataConfig().doc_stride,
    max_eval_samples: Annotated[
        int, _opt("max_eval_samples", "Real-length cases: time this many examples of the evaluation split.", DATA)
    ] = _DATA_EXAMPLES,
    batch_sizes: Annotated[str, _opt("batch_sizes", "Batch sizes to time, comma-separated.", BENCH)] = "1,32",
    sequence_length: Annotated[
        int | None, _opt("sequence_length", "Tokens per example of the random-input cases (full attention masks). "
                         "Default: 384 when the first model answers questions, else 128.", BENCH)
    ] = None,
    backend: Annotated[
        str, _opt("backend", "pytorch, onnxruntime, or both (onnxruntime only when it is installed).", BENCH)
    ] = "both",
    repeats: Annotated[int, _opt("repeats", "At least this many timed runs per case ...", BENCH)] = 20,
    min_time: Annotated[float, _opt("min_time", "... and at least this many seconds per case.", BENCH)] = 2.0,
    max_time: Annotated[
        float, _opt("max_time", "Cap: stop a case after this many seconds, even with fewer runs.", BENCH)
    ] = 30.0,
    warmup: Annotated[int, _opt("warmup", "Untimed runs before each case.", BENCH)] = 3,
    rounds: Annotated[
        int, _opt("rounds", "Take the runs in this many turns, the models alternating (A B, A B, ...).", BENCH)
    ] = 3,
    threads: Annotated[
        int | None, _opt("threads", "Intra-op threads of torch and onnxruntime (default: torch's).", BENCH)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the result as JSON on stdout.")] = False,
    output: Annotated[str | None, _opt("output", "Also write the result as JSON to this file.", BENCH)] = None,
) -> None:
    """Time inference of models side by side (PyTorch and ONNX Runtime, CPU), with size and FLOPs."""
    data = None
    if task_name or data_dir or validation_file:
        data = DataConfig(task_name=task_name, data_dir=data_dir, validation_file=validation_file,
                          max_length=max_length, max_seq_length=max_seq_length, doc_stride=doc_stride)
    run(list(models or []), data=data, data_examples=max_eval_samples, batch_sizes=batch_sizes,
        sequence_length=sequence_length, backend=backend, repeats=repeats, min_time=min_time, max_time=max_time,
        warmup=warmup, rounds=rounds, threads=threads, as_json=as_json, output=output)


def run(models: list[str], *, data: DataConfig | None = None, data_examples: int = _DATA_EXAMPLES,
        batch_sizes: str = "1,32", sequence_length: int | None = None, backend: str = "both", repeats: int = 20,
        min_time: float = 2.0, max_time: float = 30.0, warmup: int = 3, rounds: int = 3, threads: int | None = None,
        as_json: bool = False, output: str | None = None) -> dict[str, Any]:
    """Check the options, measure, print a table (or JSON) and optionally write the JSON; returns the result."""
    from prunecli.inference.benchmark import Timing, benchmark_models, parse_batch_sizes

    if not models:
        raise UserError("no models to benchmark.", hint="pass one or more model folders: prunecli benchmark A B")
    if sequence_length is None:  # the task's own input shape: a question-answering window is 384 tokens
        from prunecli.tasks import TIMING_LENGTHS, folder_task_type

        sequence_length = TIMING_LENGTHS[folder_task_type(models[0])]
    sizes = parse_batch_sizes(batch_sizes)
    if backend not in ("pytorch", "onnxruntime", "both"):
        raise UserError(f"unknown --backend {backend!r}.", hint="use pytorch, onnxruntime or both.")
    timing = Timing(warmup=warmup, min_runs=repeats, min_time=min_time, max_time=max_time, rounds=rounds)
    timing.check()
    target = _check_output(output)
    from rich.console import Console

    progress = None
    if not as_json or sys.stderr.isatty():
        err = Console(stderr=True, highlight=False)
        progress = lambda message: err.print(f"[dim]{message} ...[/dim]", markup=True)  # noqa: E731
    result = benchmark_models(models, batch_sizes=sizes, sequence_length=sequence_length,
                              backends=None if backend == "both" else backend, data=data,
                              data_examples=data_examples, threads=threads, timing=timing, progress=progress)
    from prunecli.training.checkpoint import json_text

    text = json_text(result)
    if target is not None:
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot write {target}: {err.strerror or err}.") from None
    if as_json:
        sys.stdout.write(text)
        sys.stdout.flush()
        return result
    console = Console(highlight=False)
    render(result, console)
    if target is not None:
        console.print(f"JSON written to {target}", markup=False, soft_wrap=True)
    return result


def _check_output(output: str | None) -> Path | None:
    if not output:
        return None
    target = Path(output)
    if target.is_dir():
        raise UserError(f"--output {output} is a folder.", hint="pass the path of a .json file to write.")
    if not target.parent.exists():
        raise UserError(f"--output {output}: the folder {target.parent} does not exist.")
    return target


# ---- rendering ------------------------------------------------------------------------------------------

def _ms(value: float) -> str:
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _rate(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _si(value: float | None) -> str:
    if value is None:
        return "-"
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            scaled = value / factor
            return f"{scaled:.3g}{suffix}" if scaled < 1000 else f"{scaled:,.0f}{suffix}"
    return f"{value:.0f}"


def _mb(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _speedup(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


_METRICS = {  # column header -> cell of one backend's figures
    "median ms": lambda r: _ms(r["median_ms"]),
    "p90 ms": lambda r: _ms(r["p90_ms"]),
    "ex/s": lambda r: _rate(r["examples_per_s"]),
    "speed-up": lambda r: _speedup(r.get("speedup")),
}


def _timing_table(result: dict, backends: list[str], metrics: list[str], labels: list[str], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("model", no_wrap=True)
    table.add_column("case", no_wrap=True)
    for backend in backends:
        prefix = f"{_short_backend(backend)} " if len(backends) > 1 else ""
        for metric in metrics:
            table.add_column(f"{prefix}{metric}", justify="right", no_wrap=True)
    cases = list(result["cases"])
    for i, case in enumerate(cases):
        for j, (model, label) in enumerate(zip(result["models"], labels, strict=True)):
            cells = []
            for backend in backends:
                figures = model["cases"].get(case, {}).get(backend)
                cells += [_METRICS[m](figures) if figures else "-" for m in metrics]
            last = j == len(labels) - 1 and i < len(cases) - 1
            table.add_row(label, case, *cells, end_section=last)
    return table


def _short_backend(backend: str) -> str:
    return {"pytorch": "PT", "onnxruntime": "ORT"}.get(backend, backend)


def _fits(console: Console, renderable) -> bool:
    from rich.measure import Measurement

    unbounded = console.options.update_width(100_000)  # a measurement is otherwise capped at the width
    return Measurement.get(console, unbounded, renderable).maximum <= console.width


def _backend_title(result: dict, backend: str) -> str:
    machine = result["machine"]
    if backend == "pytorch":
        return f"PyTorch, CPU, {_count(machine['torch_threads'], 'thread')}"
    return f"ONNX Runtime, CPUExecutionProvider, {_count(machine['ort_intra_op_threads'], 'intra-op thread')}"


def _count(n: int | None, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _timing_layouts(result: dict, labels: list[str]):
    """Candidate layouts, richest first: (tables, labels used)."""
    backends = result["backends"]
    full = list(_METRICS)
    lean = ["median ms", "ex/s", "speed-up"]
    if len(backends) > 1:
        title = "; ".join(f"{_short_backend(b)} = {_backend_title(result, b)}" for b in backends)
        yield [_timing_table(result, backends, full, labels, title)]
    for metrics in (full, lean):
        yield [_timing_table(result, [b], metrics, labels, _backend_title(result, b)) for b in backends]


def render(result: dict, console: Console) -> None:
    """Print the timing table(s), the per-model facts and the notes, chosen to fit `console.width`."""
    from rich.markup import escape

    labels = [m["label"] for m in result["models"]]
    numbered = [f"#{i + 1}" for i in range(len(labels))]
    chosen = None
    for names in (labels, numbered):
        for tables in _timing_layouts(result, names):
            if all(_fits(console, t) for t in tables):
                chosen = (tables, names)
                break
        if chosen:
            break
    if chosen is None:  # nothing fits: the leanest layout, short names, and let rich shrink the numbers
        chosen = (list(_timing_layouts(result, numbered))[-1], numbered)
    tables, names = chosen
    for table in tables:
        console.print(table)
    console.print(_facts_table(result, names, console))
    for name, model in zip(names, result["models"], strict=True):
        if name != model["path"]:
            console.print(f"[bold]{escape(name)}[/bold]: {escape(model['path'])}", soft_wrap=True)
    first = names[0]
    console.print(f"speed-up: median latency of {escape(first)} / this model's, per case and backend (>1: faster). "
                  "Cases: bN = batch size N; sL = L random tokens; data = real examples, padded per batch.",
                  soft_wrap=True, style="dim")
    exported = [m["onnx"] for m in result["models"] if m.get("onnx")]
    if exported:
        how = sorted({f"the {o['exporter']} exporter (opset {o['opset']})" for o in exported})
        console.print(f"ONNX: exported with {', '.join(how)}; |diff| = largest absolute difference of ONNX Runtime's "
                      "logits from PyTorch's on each case's first batch.", soft_wrap=True, style="dim")
    machine = result["machine"]
    load = machine.get("load_average_before")
    line = (f"{machine['usable_cpus']} CPUs; torch {machine['versions'].get('torch')}"
            + (f", onnxruntime {machine['versions'].get('onnxruntime')}" if "onnxruntime" in result["backends"] else "")
            + (f"; load average {load[0]:.2f} before, {machine['load_average_after'][0]:.2f} after" if load else ""))
    console.print(escape(line), soft_wrap=True, style="dim")
    for note in result.get("notes", []):
        console.print(f"[yellow]Note:[/yellow] {escape(note)}", soft_wrap=True)


def _facts_table(result: dict, names: list[str], console: Console):
    from rich.table import Table

    def build(with_onnx: bool, with_encoder: bool):
        models = result["models"]
        seq = models[0]["flops_sequence_length"] if models else result["settings"]["sequence_length"]
        table = Table(title="Models", title_justify="left", header_style="bold")
        table.add_column("model", no_wrap=True)
        table.add_column("precision", no_wrap=True)
        table.add_column("params", justify="right", no_wrap=True)
        table.add_column("non-zero", justify="right", no_wrap=True)
        table.add_column(f"FLOPs/ex s{seq}", justify="right", no_wrap=True)
        if with_encoder:
            table.add_column("encoder", justify="right", no_wrap=True)
        table.add_column("file MB", justify="right", no_wrap=True)
        if with_onnx:
            table.add_column("ONNX |diff|", justify="right", no_wrap=True)
        for name, model in zip(names, models, strict=True):
            cells = [name, model.get("precision") or "-", _si(model["params"]), _si(model["nonzero_params"]),
                     _si(model["flops_per_example"])]
            if with_encoder:
                cells.append(_si(model.get("encoder_flops_per_example")))
            cells.append(_mb(model["file_mb"]))
            if with_onnx:
                onnx = model.get("onnx")
                cells.append(f"{onnx['max_abs_diff']:.1e}" if onnx else "-")
            table.add_row(*cells)
        return table

    has_onnx = any(m.get("onnx") for m in result["models"])
    for with_onnx, with_encoder in ((has_onnx, True), (has_onnx, False), (False, False)):
        table = build(with_onnx, with_encoder)
        if _fits(console, table):
            return table
    return table
