"""Sparsity statistics of a state dict: how sparse a model is and what structure its zeros have.

Used by `prunecli inspect`, by `prune`'s final summary (`sparsity_report.json`) and by the model
card. The report reads tensors only (memory-mapped safetensors, `torch.load(weights_only=True)`),
never builds an `nn.Module`, so it works for any architecture and costs about one tensor of memory
at a time. The statistics are numpy (`prunecli.report.arrays`): torch is imported only to read a torch
file or to convert the tensors of an in-memory torch state dict, so inspecting a safetensors checkpoint
or rendering a saved report never pays torch's seconds of import time.

The report is a plain JSON-ready dict with a stable, versioned schema (`SCHEMA_VERSION`,
`REPORT_SCHEMA`, documented in docs/inspect.md). Rules it applies, all decided from tensor names,
shapes and dtypes (there is no model to ask):

* A *layer* is every floating-point tensor named `*.weight` with 2 or more dimensions.
* A layer is a *matmul* weight (INC's "matmul, Gemm, conv") unless it is an embedding table
  (`EMBEDDING_NAME_RE` on the module's last name segment: `*embedding`, `*embeddings`, `embed_*`,
  `wte`, `wpe`, `shared`, `relative_attention_bias`).
* Rows are dim 0 (output features / channels), columns dim 1 (input features). A conv weight
  `[out, in, *kernel]` is viewed as `[out, kernel..., in]` flattened to 2-D, so N:M groups run along
  input channels as in INC and NVIDIA's 2:4.
* Without a recipe, a matmul weight is *pruned* when at least `PRUNED_MIN_SPARSITY` of it is zero;
  with a recipe, the pruned layers are exactly the recipe's layers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prunecli.errors import CheckpointError, UserError
from prunecli.report import units
from prunecli.report.arrays import as_array, count_zeros, dtype_name, is_float, zero_mask
from prunecli.report.load import RECIPE_FILE, load_recipe_file, load_tensors
from prunecli.structure import UNIT_PATTERNS, is_task_head, zero_lines

SCHEMA_VERSION = 3  # 2: the `units` section (heads and neurons per layer); 3: the optional `task`
PRUNED_MIN_SPARSITY = 0.01
NM_GROUP = 4  # N:M conformance is measured on groups of 4 consecutive input weights ...
NM_KEEP = 2  # ... holding at most 2 non-zeros (2:4)

# Layer kinds, in the order the table shows them, with their titles.
KIND_TITLES = {
    "attention": "Attention",
    "ffn": "Feed-forward",
    "linear": "Other linear",
    "head": "Head",
    "conv": "Conv",
    "embedding": "Embedding",
}
MATMUL_KINDS = ("attention", "ffn", "linear", "head", "conv")
OTHER_KINDS = ("norm", "bias", "other", "buffer")

EMBEDDING_NAME_RE = re.compile(r"(embeddings?|^embed_\w*|^wte|^wpe|^shared|^relative_attention_bias)$", re.IGNORECASE)
_ATTENTION_SEGMENTS = {
    "query", "key", "value", "q_proj", "k_proj", "v_proj", "o_proj", "out_proj", "qkv", "qkv_proj", "c_attn",
    "q_lin", "k_lin", "v_lin", "out_lin", "query_key_value", "wqkv", "q", "k", "v", "o",
}
_FFN_SEGMENTS = {
    "intermediate", "output", "mlp", "ffn", "feed_forward", "fc1", "fc2", "c_fc", "up_proj", "down_proj",
    "gate_proj", "wi", "wo", "wi_0", "wi_1", "lin1", "lin2", "dense_h_to_4h", "dense_4h_to_h", "densereludense",
}
_PATTERN_NXM = re.compile(r"^(\d+)x(\d+)$")
_PATTERN_NM = re.compile(r"^(\d+):(\d+)$")


# ----------------------------------------------------------------------------------------------------------
# Classification and structure
# ----------------------------------------------------------------------------------------------------------


def tensor_kind(name: str, tensor) -> str:
    """The kind of a tensor from its name, shape and dtype: a layer kind (`KIND_TITLES`) or one of `OTHER_KINDS`.

    `tensor`: a numpy array, a `RawFloat` or a torch tensor (only its dtype and number of dimensions are read).
    """
    tensor = as_array(tensor)
    if not is_float(tensor):
        return "buffer"
    segments = name.split(".")
    if segments[-1] == "weight" and tensor.ndim >= 2:
        module = segments[:-1]
        if module and EMBEDDING_NAME_RE.search(module[-1]):
            return "embedding"
        if tensor.ndim > 2:
            return "conv" if tensor.ndim <= 5 else "other"
        return _matmul_role(module)
    if segments[-1] == "bias":
        return "bias"
    if segments[-1] == "weight" and tensor.ndim == 1:
        return "norm"
    return "other"


def _matmul_role(module: list[str]) -> str:
    if is_task_head(".".join(module)):
        return "head"
    lowered = [s.lower() for s in module]
    if any("attn" in s or "attention" in s or s in _ATTENTION_SEGMENTS for s in lowered):
        return "attention"
    if any(s in _FFN_SEGMENTS for s in lowered):
        return "ffn"
    return "linear"


def _zero_views(zeros: np.ndarray) -> np.ndarray:
    """A layer's zero mask as `[out, kernel, in]` (kernel 1 for 2-D weights), C-contiguous."""
    out, inp = zeros.shape[0], zeros.shape[1]
    if zeros.ndim == 2:
        return np.ascontiguousarray(zeros).reshape(out, 1, inp)
    return np.ascontiguousarray(np.moveaxis(zeros, 1, -1)).reshape(out, -1, inp)


def _group_zeros(zeros3: np.ndarray) -> np.ndarray:
    """Zeros per group of `NM_GROUP` (4) consecutive input weights, as uint32 (input size a multiple of 4).

    The 4 mask bytes of a group are read as one uint32 and summed by a multiplication into its top byte
    (each byte is 0 or 1, so no carry): about 80x faster than `sum(-1)` over a length-4 axis.
    """
    words = zeros3.view(np.uint8).view(np.uint32)  # contiguous, last axis a multiple of 4 bytes
    return (words * np.uint32(0x01010101)) >> np.uint32(24)


def _largest_run(zeros2d: np.ndarray, axis: int, n_zeros: int) -> int:
    """Largest run length b (power of two or the whole axis) such that every aligned run of b elements along
    `axis` is either all zero or free of zeros. Halving any/all reductions, so O(numel); a size whose
    multiples cannot add up to `n_zeros` is rejected without touching the mask."""
    n = zeros2d.shape[axis]
    any_z = all_z = zeros2d
    size = 1
    while any_z.shape[axis] % 2 == 0 and size * 2 <= n and n_zeros % (size * 2) == 0:
        shape = list(any_z.shape)
        shape[axis : axis + 1] = [shape[axis] // 2, 2]
        next_any = any_z.reshape(shape).any(axis + 1)
        next_all = all_z.reshape(shape).all(axis + 1)
        if not np.array_equal(next_any, next_all):
            return size  # a failed run size also fails for the whole axis, which contains such runs
        any_z, all_z, size = next_any, next_all, size * 2
    if size < n and n_zeros % n == 0 and np.array_equal(any_z.any(axis), all_z.all(axis)):
        return n  # the whole axis (when it is not a power of two)
    return size


def tensor_structure(weight) -> dict:
    """Zeros and their structure in one layer weight (2-D, or conv 3-D to 5-D).

    `weight`: a numpy array, a `RawFloat` (bfloat16/float8 bits) or a torch tensor. Returns `numel`,
    `zeros`, `sparsity` and:
    `structure`: `dense` (no zeros), `empty` (all zeros), `1xchannel` (every zero lies in an all-zero output
    row/channel), `channelx1` (... in an all-zero input column/channel), `RxC` (the largest block shape, in
    powers of two or a whole dimension, such that every aligned block holding a zero is all zero; only when
    larger than 1x1), `1:4`/`2:4` (every group of 4 consecutive input weights has at most 1/2 non-zeros) or
    `unstructured`. `block`: `[R, C]` of that largest block shape (null when it is 1x1 or there are no zeros).
    `nm_conformance`: share of groups of 4 with at most 2 non-zeros (null when the input size is not a
    multiple of 4). `empty_rows` / `empty_cols`: all-zero output rows (channels) / input columns (channels).
    """
    weight = as_array(weight)
    numel = weight.size
    zeros = zero_mask(weight)  # one bool mask (a quarter of a float32 weight); everything below reads it
    n_zeros = int(np.count_nonzero(zeros)) if numel else 0
    out, inp = weight.shape[0], weight.shape[1]
    has_groups = inp % NM_GROUP == 0 and numel > 0
    stats = {
        "numel": numel,
        "zeros": n_zeros,
        "sparsity": n_zeros / numel if numel else 0.0,
        "structure": "dense",
        "block": None,
        "nm_conformance": 0.0 if has_groups else None,  # dense: every group has 4 non-zeros
        "empty_rows": 0,
        "empty_cols": 0,
    }
    if n_zeros == 0:
        return stats
    # Counting arguments skip passes over the mask: an empty row needs K*I zeros, an empty column O*K, and
    # "every zero lies in an empty row" holds exactly when the empty rows hold all the zeros.
    zeros3 = _zero_views(zeros)
    del zeros  # a conv's reordered copy replaces it
    kernel = zeros3.shape[1]
    width = kernel * inp
    if n_zeros >= width:
        stats["empty_rows"] = int(np.count_nonzero(zeros3.all(2).all(1)))
    if n_zeros >= out * kernel:
        stats["empty_cols"] = int(np.count_nonzero(zeros3.all(1).all(0)))
    group_zeros = None
    if has_groups:
        group_zeros = _group_zeros(zeros3)
        conforming = int(np.count_nonzero(group_zeros >= NM_GROUP - NM_KEEP))  # at most NM_KEEP non-zeros
        stats["nm_conformance"] = conforming / group_zeros.size
    if n_zeros == numel:
        stats.update(structure="empty", block=[out, width])
        return stats
    zeros2 = zeros3.reshape(out, width)
    rows, cols = _largest_run(zeros2, 0, n_zeros), _largest_run(zeros2, 1, n_zeros)
    if rows * cols > 1:
        stats["block"] = [rows, cols]
    if n_zeros == stats["empty_rows"] * width:
        stats["structure"] = "1xchannel"
    elif n_zeros == stats["empty_cols"] * out * kernel:
        stats["structure"] = "channelx1"
    elif rows * cols > 1:
        stats["structure"] = f"{rows}x{cols}"
    elif group_zeros is not None and stats["nm_conformance"] == 1.0:
        stats["structure"] = "1:4" if int(group_zeros.min()) >= NM_GROUP - 1 else "2:4"
    else:
        stats["structure"] = "unstructured"
    return stats


def pattern_sparsity(weight, pattern: str) -> float | None:
    """Share of a layer's weights that lie in entirely-zero units of `pattern` (INC's block-wise sparsity).

    Units: `RxC` aligned blocks of the 2-D view (edge blocks of a layer the block does not divide are partial
    blocks, as the pruner makes them); `1xchannel` output rows; `channelx1` input columns (channels for conv);
    for `N:M` the pruned unit is a single weight, so this is the element-wise sparsity. None for a pattern
    that is not recognised. `weight` as for `tensor_structure`.
    """
    weight = as_array(weight)
    numel = weight.size
    pattern = pattern.strip().lower()
    if not numel:
        return None
    zeros3 = _zero_views(zero_mask(weight))
    out, kernel, inp = zeros3.shape
    if pattern == "1xchannel":
        return int(np.count_nonzero(zeros3.all(2).all(1))) / out
    if pattern == "channelx1":
        return int(np.count_nonzero(zeros3.all(1).all(0))) / inp
    if _PATTERN_NM.match(pattern):
        return int(np.count_nonzero(zeros3)) / numel
    match = _PATTERN_NXM.match(pattern)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        return None
    rows, cols = int(match.group(1)), int(match.group(2))
    width = kernel * inp
    zeros2 = zeros3.reshape(out, width)
    if out % rows == 0 and width % cols == 0:
        blocks = zeros2.reshape(out // rows, rows, width // cols, cols).all(3).all(1)
        return int(np.count_nonzero(blocks)) * rows * cols / numel
    # Partial edge blocks: pad with "zero" so that a partial block is judged on its own weights only.
    padded_rows, padded_cols = -(-out // rows) * rows, -(-width // cols) * cols
    padded = np.ones((padded_rows, padded_cols), dtype=bool)
    padded[:out, :width] = zeros2
    blocks = padded.reshape(padded_rows // rows, rows, padded_cols // cols, cols).all(3).all(1)
    # Weights in zero blocks: each zero block's height (rows, or what is left of the last block row) times
    # its width, counted per block row and block column without expanding the block mask.
    heights = np.minimum(rows, out - rows * np.arange(blocks.shape[0]))
    widths = np.minimum(cols, width - cols * np.arange(blocks.shape[1]))
    return int((heights[:, None] * widths[None, :])[blocks].sum()) / numel


# ----------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------


def _aggregate() -> dict:
    return {"tensors": 0, "numel": 0, "zeros": 0, "sparsity": 0.0}


def _add(agg: dict, numel: int, zeros: int) -> None:
    agg["tensors"] += 1
    agg["numel"] += numel
    agg["zeros"] += zeros
    agg["sparsity"] = agg["zeros"] / agg["numel"] if agg["numel"] else 0.0


def _recipe_groups(recipe: Any) -> list[dict]:
    """Groups of a resolved recipe, each with `pattern`, `target_sparsity` and `layers` as weight names.

    The groups are under `pruning_configs` (what the pruner's `resolved_recipe()` writes, INC's key) or
    `groups`; other keys are ignored. Every group must list its `layers` (module names, or weight names):
    an unresolved recipe (only `op_names` regexes) cannot say which layers were pruned.
    """
    groups = None
    if isinstance(recipe, Mapping):
        groups = recipe.get("groups", recipe.get("pruning_configs"))
    if not isinstance(groups, list):
        raise UserError("the recipe has no `pruning_configs` (or `groups`) list")
    out = []
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or not isinstance(group.get("layers"), list):
            raise UserError(f"recipe group {i} has no `layers` list (not a resolved recipe written by prune)")
        weights = [str(layer) if str(layer).endswith(".weight") else f"{layer}.weight" for layer in group["layers"]]
        target = group.get("target_sparsity")
        out.append({
            "index": i,
            "name": group.get("name") if isinstance(group.get("name"), str) else None,
            "pattern": str(group.get("pattern")) if group.get("pattern") is not None else None,
            "target_sparsity": float(target) if isinstance(target, int | float) else None,
            "weights": weights,
        })
    return out


def sparsity_report(source: str | Path | Mapping[str, Any], recipe: dict | None = None,
                    config: Mapping[str, Any] | None = None) -> dict:
    """The sparsity report of a checkpoint path or an in-memory state dict (see the module doc and docs/inspect.md).

    An in-memory state dict maps names to torch tensors (what `prune` passes), numpy arrays or `RawFloat`s;
    torch tensors are converted one at a time as they are measured (`.numpy()` shares their memory).

    With `recipe` (the resolved recipe: `{"pruning_configs" or "groups": [{"pattern", "target_sparsity",
    "layers": [module names]}, ...]}`) or, for a folder, its `prune_recipe.json`, the pruned layers are the
    recipe's and the report adds the block-wise ratio and each group's achieved vs target sparsity.
    `config` (the model's config as a dict; a folder's `config.json` by default) gives the head size and the
    activation the `units` count needs (`prunecli.structure`: the same count `prunecli compact` applies).
    Raises CheckpointError for bad files; a malformed in-memory recipe is a caller's bug (ValueError), a
    malformed `prune_recipe.json` only a warning.
    """
    warnings: list[str] = []
    if isinstance(source, Mapping):
        tensors, fmt, src = source, "memory", None
    else:
        tensors = load_tensors(source)
        fmt, src = tensors.format, str(source)
        if recipe is None and Path(source).is_dir():
            try:
                recipe = load_recipe_file(source)
            except CheckpointError as err:
                warnings.append(f"{err.message}; ignored")
    groups: list[dict] = []
    if recipe is not None:
        try:
            groups = _recipe_groups(recipe)
        except UserError as err:
            if fmt == "memory":  # the prune job passed a malformed recipe: a bug, not a user error
                raise ValueError(err.message) from err
            warnings.append(f"{RECIPE_FILE}: {err.message}; ignored")
            recipe = None
    # A layer is in at most one element group and in any head/neuron groups (the pruner's rule): it counts in
    # each; its `group` in the table is its element group, else its first group.
    weight_groups: dict[str, list[int]] = {}
    for g in groups:
        for w in g["weights"]:
            weight_groups.setdefault(w, []).append(g["index"])
    folder = Path(source) if src and Path(source).is_dir() else None
    if config is None:
        config = units.read_config(folder)
    shapes = {name: tuple(getattr(tensors[name], "shape", ())) for name in sorted(tensors, key=natural_key)}
    structure = units.structure_of(shapes, config, recipe)
    compacted = units.compacted_section(folder)  # its units are gone already: no slice of a layer is removed
    unit_members = set() if compacted else structure.zero_lines_needed()
    unit_lines: dict[str, dict] = {}
    removed = {} if compacted else units.removed_slices(recipe, structure)
    layers, others = [], {kind: _aggregate() for kind in OTHER_KINDS}
    totals = {"matmul": _aggregate(), "all": _aggregate(), "pruned": _aggregate()}
    group_stats = [{"numel": 0, "zeros": 0, "block_numel": 0, "block_zeros": 0.0, "found": set()} for _ in groups]
    block_zero_weighted = 0.0
    for name in tensors:
        tensor = as_array(tensors[name])
        kind = tensor_kind(name, tensor)
        if name in unit_members and tensor.ndim in (1, 2):
            unit_lines[name] = zero_lines(zero_mask(tensor))
        if kind in OTHER_KINDS:
            zeros = count_zeros(tensor)
            _add(others[kind], tensor.size, zeros)
            if kind != "buffer":
                _add(totals["all"], tensor.size, zeros)
            continue
        stats = tensor_structure(tensor)
        in_groups = weight_groups.get(name, [])
        element_groups = [i for i in in_groups if groups[i]["pattern"] not in UNIT_PATTERNS]
        matmul = kind in MATMUL_KINDS
        pruned = bool(in_groups) if groups else (matmul and stats["sparsity"] >= PRUNED_MIN_SPARSITY)
        layers.append({
            "name": name,
            "module": name[: -len(".weight")] if name.endswith(".weight") else name,
            "kind": kind,
            "matmul": matmul,
            "shape": list(tensor.shape),
            "dtype": dtype_name(tensor),
            **stats,
            "pruned": pruned,
            "group": (element_groups or in_groups or [None])[0],
        })
        _add(totals["all"], stats["numel"], stats["zeros"])
        if matmul:
            _add(totals["matmul"], stats["numel"], stats["zeros"])
        if pruned:
            _add(totals["pruned"], stats["numel"], stats["zeros"])
        layer_block_zeros = None  # weights in all-zero units of the layer's recipe patterns
        if name in removed and tensor.ndim == 2:  # on what heads/neurons left
            numel, zeros = units.remaining_counts(zero_mask(tensor), removed[name])
            layer_block_zeros = float(stats["numel"] - numel)  # the weights of the removed heads/neurons
        else:
            numel, zeros = stats["numel"], stats["zeros"]
        for group in in_groups:
            gs = group_stats[group]
            gs["found"].add(name)
            gs["numel"] += numel
            gs["zeros"] += zeros
            pattern = groups[group]["pattern"]
            if pattern in UNIT_PATTERNS or not pattern:
                continue  # a head/neuron group's ratios are its units' share (`_unit_share`)
            block = pattern_sparsity(tensor, pattern)
            if block is None:
                warnings.append(f"group {group}: pattern {pattern!r} is not recognised; no block-wise ratio for it")
                continue
            gs["block_numel"] += stats["numel"]
            gs["block_zeros"] += block * stats["numel"]
            layer_block_zeros = block * stats["numel"]  # the element pattern's blocks include the removed units
        if layer_block_zeros is not None:
            block_zero_weighted += layer_block_zeros
        del tensor

    recipe_out = None
    if groups:
        recipe_out = {"groups": []}
        for g, gs in zip(groups, group_stats, strict=True):
            missing = [w for w in g["weights"] if w not in gs["found"]]
            if missing:
                warnings.append(f"group {g['index']}: {len(missing)} layer(s) of the recipe are not in the "
                                f"checkpoint, e.g. {missing[0]}")
            recipe_out["groups"].append({
                "index": g["index"],
                "name": g["name"],
                "pattern": g["pattern"],
                "target_sparsity": g["target_sparsity"],
                "layers": len(gs["found"]),
                "missing": missing,
                "numel": gs["numel"],
                "zeros": gs["zeros"],
                "sparsity": _unit_share(recipe, g) if g["pattern"] in UNIT_PATTERNS else
                gs["zeros"] / gs["numel"] if gs["numel"] else 0.0,
                "blockwise_sparsity": _unit_share(recipe, g) if g["pattern"] in UNIT_PATTERNS else
                gs["block_zeros"] / gs["block_numel"] if gs["block_numel"] else None,
            })
    matmul_numel = totals["matmul"]["numel"]
    model = {
        **totals,
        "blockwise_matmul": (block_zero_weighted / matmul_numel if matmul_numel else 0.0) if groups else None,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "source": src,
        "format": fmt,
        "pruned_rule": "recipe" if groups else f"sparsity>={PRUNED_MIN_SPARSITY}",
        "filter": None,
        "model": model,
        "recipe": recipe_out,
        "layers": sorted(layers, key=lambda layer: natural_key(layer["name"])),
        "others": [{"kind": kind, **agg} for kind, agg in others.items() if agg["tensors"]],
        "units": compacted or units.units_section(structure, unit_lines),
        "warnings": list(dict.fromkeys(warnings)),
        **_task_of(config),
    }


def _task_of(config: Mapping[str, Any]) -> dict:
    """`{"task": ...}` when the model's config names its task by its architecture, else nothing."""
    from prunecli.tasks import config_task_type

    task = config_task_type(config)
    return {"task": task} if task else {}


def _unit_share(recipe: Any, group: dict) -> float:
    """A head/neuron group's achieved sparsity: the share of its blocks' units it removed (`pruned_units`)."""
    entries = [u for u in (recipe or {}).get("pruned_units") or [] if u.get("group") == group["index"]]
    total = sum(u["units"] for u in entries)
    return sum(len(u["pruned"]) for u in entries) / total if total else 0.0


def natural_key(name: str) -> list:
    """Sort key that puts `layer.2` before `layer.10`."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def select_layers(report: dict, pattern: str | None = None, sort: str = "name") -> dict:
    """A copy of a report (or comparison) with only the layers whose name matches `pattern` (`re.search`),
    ordered by `name` (natural order) or `sparsity` (highest first; for a comparison, the second checkpoint's).
    Model-level figures are left as they are: they describe the whole checkpoint."""
    if sort not in ("name", "sparsity"):
        raise UserError(f"unknown --sort {sort!r}", "Use --sort name or --sort sparsity.")
    layers = report["layers"]
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise UserError(f"--filter {pattern!r} is not a valid regular expression: {err}") from err
        layers = [layer for layer in layers if regex.search(layer["name"])]
        if not layers:
            examples = ", ".join(layer["name"] for layer in report["layers"][:3])
            raise UserError(f"no layer matches --filter {pattern!r}", f"Layer names look like: {examples}")
    if sort == "sparsity":
        def by_sparsity(layer):
            value = layer.get("sparsity", layer.get("sparsity_b"))
            return (-(value if value is not None else -1.0), natural_key(layer["name"]))

        layers = sorted(layers, key=by_sparsity)
    else:
        layers = sorted(layers, key=lambda layer: natural_key(layer["name"]))
    return {**report, "layers": layers, "filter": pattern}
