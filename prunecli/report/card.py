"""The model card (`README.md`) written beside a pruned checkpoint: what was pruned, how sparse, how good."""

from __future__ import annotations

import json
from typing import Any

from prunecli import __version__
from prunecli.report.render import markdown_table


def model_card(*, model_name: str, cfg: Any, metrics: dict[str, float], report: dict, recipe: dict) -> str:
    """A README.md for the output folder: what was pruned, how sparse it is, how well it scores."""
    metric_lines = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, int | float))
    from prunecli.tasks import AUTO_CLASSES, DESCRIPTIONS, task_type_of

    kind = report.get("task") or task_type_of(cfg.data)
    task = f"{cfg.data.task_name or 'custom data'} ({DESCRIPTIONS[kind]})"
    return (
        f"---\nlibrary_name: transformers\ntags:\n- pruned\n- sparse\n- prunecli\n---\n\n"
        f"# {model_name}: pruned with prunecli\n\n"
        f"Pruned from `{cfg.train.model_name_or_path}` on {task} with "
        f"prunecli {__version__}. Pruned weights are stored as exact zeros in a "
        f"standard checkpoint: `{AUTO_CLASSES[kind]}.from_pretrained` loads it as is.\n\n"
        f"## Evaluation\n\n| metric | value |\n|---|---|\n{metric_lines}\n\n"
        f"## Sparsity\n\n{markdown_table(report)}\n\n"
        f"## Recipe\n\n{recipe_summary(recipe)}\n"
    )


def recipe_summary(recipe: dict) -> str:
    """The resolved recipe in a few lines: one row per group, the training method and how many units each
    head/neuron group removed. The whole recipe (every layer name, every removed unit's index: tens of KB for a
    structured BERT-base) stays in `prune_recipe.json`."""
    rows = ["| group | pattern | target | pruning type | scope | layers | steps |", "|---|---|---|---|---|---|---|"]
    for index, group in enumerate(recipe.get("pruning_configs") or []):
        steps = f"{group.get('start_step')}-{group.get('end_step')}, every {group.get('pruning_frequency')}"
        rows.append(f"| {index} | {group.get('pattern')} | {group.get('target_sparsity')} | "
                    f"{group.get('pruning_type')} | {group.get('pruning_scope')} | {len(group.get('layers') or [])} "
                    f"| {steps} |")
    lines = ["The fully resolved recipe, every layer and removed unit listed, is in `prune_recipe.json`.", "",
             *rows, ""]
    removed: dict[tuple[int, str], list[int]] = {}
    for entry in recipe.get("pruned_units") or []:
        counts = removed.setdefault((entry.get("group"), entry.get("unit")), [0, 0, 0])
        counts[0] += len(entry.get("pruned") or [])
        counts[1] += int(entry.get("units") or 0)
        counts[2] += 1
    lines += [f"- group {group}: {gone} of {total} {unit}s removed across {blocks} blocks"
              for (group, unit), (gone, total, blocks) in removed.items()]
    if recipe.get("training"):
        lines.append("- training: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in recipe["training"].items()))
    if recipe.get("excluded_heads"):
        lines.append("- never pruned (task head): " + ", ".join(f"`{name}`" for name in recipe["excluded_heads"]))
    return "\n".join(lines).rstrip() + "\n"


def export_card(record: dict[str, Any]) -> str:
    """The README.md of an exported (ONNX) folder: what was done, how it was checked, what is known of its
    accuracy and size, and how to run it."""
    int8 = record.get("precision") == "int8"
    checks = record.get("checks", {})
    fp32 = checks.get("float32", {})
    lines = [f"Exported from `{record['source']}` to ONNX (`model.onnx`, {record['onnx']['exporter']} exporter, "
             f"opset {record['onnx']['opset']}) with prunecli {__version__}."]
    if int8:
        q = record.get("quantization") or {}
        lines.append(f"Quantized to INT8 with onnxruntime's {q.get('method', 'dynamic')} quantization "
                     f"({'per-channel' if q.get('per_channel') else 'per-tensor'} {q.get('weight_type', 'QInt8')} "
                     "weights, activations quantized per batch at run time).")
    sizes = f"File: {record['file_mb']:.3g} MB"
    if int8:
        sizes += f" (float32 ONNX: {record['float32_file_mb']:.3g} MB)"
    if record.get("source_file_mb"):
        sizes += f"; the source checkpoint's weights: {record['source_file_mb']:.3g} MB"
    lines.append(sizes + ".")
    check = (f"## Checks\n\nOn {record['checked_on']}: the float32 export's logits are within "
             f"{fp32.get('max_abs_diff', float('nan')):.2g} of PyTorch's (tolerance {fp32.get('tolerance', 1e-4):g}).")
    if int8:
        q8 = checks.get("int8", {})
        agreement = q8.get("argmax_agreement")
        check += (f" The INT8 file: largest logit difference {q8.get('max_abs_diff', float('nan')):.3g}"
                  + (f", the same predicted class on {agreement:.1%} of {q8.get('examples')} examples."
                     if agreement is not None else "."))
    known = []
    metrics = record.get("source_metrics")
    if isinstance(metrics, dict):
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, int | float)
                          and not isinstance(v, bool) and not k.endswith(("loss", "runtime", "per_second", "epoch")))
        if shown:
            known.append(f"The source checkpoint (PyTorch): {shown}.")
    sparsity = record.get("source_sparsity")
    if isinstance(sparsity, dict) and isinstance(sparsity.get("pruned"), dict):
        known.append(f"Sparsity of the source's pruned layers: {sparsity['pruned'].get('sparsity', 0):.3f}.")
    compact = record.get("compact")
    if compact:
        known.append(f"Compacted: {compact.get('heads_removed')} heads and {compact.get('neurons_removed')} "
                     "neurons removed.")
    known.append("Score this file with `prunecli evaluate FOLDER` and time it with `prunecli benchmark SOURCE "
                 "FOLDER` (onnxruntime, the same metrics and data options as for a checkpoint).")
    usage = ("```python\nimport onnxruntime as ort\nfrom transformers import AutoTokenizer\n\n"
             "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
             "session = ort.InferenceSession(f\"{folder}/model.onnx\", providers=[\"CPUExecutionProvider\"])\n"
             "names = {i.name for i in session.get_inputs()}\n"
             "feeds = {k: v for k, v in tokenizer([\"a sentence\"], return_tensors=\"np\").items() if k in names}\n"
             "logits = session.run([\"logits\"], feeds)[0]\n```")
    return ("---\nlibrary_name: onnx\ntags:\n- onnx\n- prunecli\n" + ("- int8\n" if int8 else "")
            + "---\n\n" + f"# {'INT8' if int8 else 'Float32'} ONNX export\n\n" + " ".join(lines) + "\n\n"
            + check + "\n\n## What is known\n\n" + "\n".join(f"- {k}" for k in known) + "\n\n## Run it\n\n"
            + "Any ONNX runtime loads `model.onnx` (inputs `" + "`, `".join(record["onnx"]["inputs"])
            + "`, int64, shape batch x sequence; output `logits`). With onnxruntime:\n\n" + usage + "\n")
