"""The one reading of a model's structure: attention blocks, heads, feed-forward pairs, task heads, and what
`compact` can remove. The pruner, the report, `inspect` and `compact` all ask this module, so they cannot
disagree about which layers form a block or which units are gone.

Head and neuron pruning (and compaction) need more than a list of Linear layers: an attention head is
`head_size` rows of the query, key and value projections and the same columns of the output projection;
a feed-forward neuron is one row of the up projection and the same column of the down projection. The
blocks are found from the *names* of 2-D weights (module names, with their `[out, in]` shapes), so a
built model (`read_model`) and a checkpoint's tensors (`read_weights`, no model and no torch) are read
by the same code:

- BERT-like self-attention (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, MiniLM): `P.query`, `P.key`,
  `P.value` with the output projection `parent(P).output.dense`;
- DistilBERT (`q_lin`, `k_lin`, `v_lin`, `out_lin`), MPNet (`q`, `k`, `v`, `o`) and the `q_proj`,
  `k_proj`, `v_proj`, `out_proj`/`o_proj` naming, with the output projection beside them;
- feed-forward: `P.intermediate.dense` with `P.output.dense` in a layer that also holds `P.attention.*`
  (BERT-like), or `P.lin1`/`P.lin2` (DistilBERT) or `P.fc1`/`P.fc2`, the up projection's `[size, hidden]`
  matching the down projection's `[hidden, size]`.

Head geometry comes from the attention module's attributes (a model) or from `config.json` (a checkpoint).
What compact can remove is decided on zero masks, by `plan_units` (see `removable_heads` and
`removable_neurons` for the rules); `prunecli.sparsity.compact` applies that plan to a model and the report
counts it from a checkpoint's tensors. A model whose attention-like modules cannot be mapped raises
`StructureError` (a UserError: exit 2 on the command line) naming the module.

numpy and the standard library only at import time; torch is imported by `read_model` alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from prunecli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

#: (query, key, value, output-beside-them) names of the supported self-attention layouts; an output of None
#: means the parent's `output.dense` (BERT's BertSelfOutput).
ATTENTION_LAYOUTS = (
    ("query", "key", "value", None),
    ("q_lin", "k_lin", "v_lin", "out_lin"),
    ("q_proj", "k_proj", "v_proj", "out_proj"),
    ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("q", "k", "v", "o"),
)
#: (up, down) names of the supported feed-forward layouts.
FEED_FORWARD_LAYOUTS = (("intermediate.dense", "output.dense"), ("lin1", "lin2"), ("fc1", "fc2"))
#: Recipe patterns whose units are structures of several layers: heads of attention blocks, neurons of
#: feed-forward blocks.
UNIT_PATTERNS = ("head", "neuron")
#: Module names (dotted components) of task heads: never pruned, never part of a block.
TASK_HEAD_NAMES = ("classifier", "pre_classifier", "score", "qa_outputs", "lm_head", "cls", "head")

#: Attribute (and config key) names of an attention module's head count.
HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads", "num_heads")
_HEAD_SIZE_ATTRS = ("attention_head_size", "head_dim", "head_size")
_ACTIVATION_ATTRS = ("intermediate_act_fn", "activation", "activation_fn", "act_fn", "act")
# Config keys naming the feed-forward activation (BERT-likes, DistilBERT, BART-likes).
_ACTIVATION_CONFIG_KEYS = ("hidden_act", "activation", "activation_function")
_UNSUPPORTED_HINT = ("head pruning and compaction support BERT, RoBERTa, DistilBERT, MiniLM and similar encoders; "
                     "use an element pattern (4x1, 2:4) for this model.")


class StructureError(UserError):
    """The model's attention or feed-forward layout is not one prunecli can map."""


@dataclass(frozen=True)
class AttentionBlock:
    """One self-attention block: module names of its projections and its head geometry."""

    name: str  # the attention module (e.g. `bert.encoder.layer.0.attention.self`)
    query: str
    key: str
    value: str
    output: str
    num_heads: int
    head_size: int

    @property
    def members(self) -> tuple[str, str, str, str]:
        return (self.query, self.key, self.value, self.output)

    @property
    def cuts(self) -> tuple[tuple[str, int], ...]:
        """(member, axis of `[out, in]` its heads are cut along): rows of q/k/v, columns of the output."""
        return ((self.query, 0), (self.key, 0), (self.value, 0), (self.output, 1))

    @property
    def units(self) -> int:
        return self.num_heads

    @property
    def unit_size(self) -> int:
        """Rows (or columns) of a member one unit spans."""
        return self.head_size


@dataclass(frozen=True)
class FeedForwardBlock:
    """One feed-forward block: its up (`[size, hidden]`) and down (`[hidden, size]`) projections.

    `activation`: where the activation between them is found (a module path below `name` for a model
    read, the config's activation name for a checkpoint read); None when unknown, and then a neuron
    whose constant output would have to be folded is kept.
    """

    name: str  # the module holding both (e.g. `bert.encoder.layer.0`, `distilbert.transformer.layer.0.ffn`)
    up: str
    down: str
    size: int  # neurons
    activation: str | None

    @property
    def members(self) -> tuple[str, str]:
        return (self.up, self.down)

    @property
    def cuts(self) -> tuple[tuple[str, int], ...]:
        return ((self.up, 0), (self.down, 1))

    @property
    def units(self) -> int:
        return self.size

    @property
    def unit_size(self) -> int:
        return 1


@dataclass(frozen=True)
class Structure:
    """A model's blocks in module order, and its task-head layers (module names)."""

    attention: tuple[AttentionBlock, ...]
    feed_forward: tuple[FeedForwardBlock, ...]
    task_heads: tuple[str, ...]

    @property
    def blocks(self) -> tuple[AttentionBlock | FeedForwardBlock, ...]:
        return (*self.attention, *self.feed_forward)

    def zero_lines_needed(self) -> set[str]:
        """Tensor names (weights and value biases) whose zero lines `plan_units` reads."""
        names = {f"{b.output}.weight" for b in self.attention} | {f"{b.value}.weight" for b in self.attention}
        names |= {f"{b.value}.bias" for b in self.attention}
        return names | {f"{m}.weight" for b in self.feed_forward for m in b.members}


def is_task_head(name: str) -> bool:
    """Whether a module (or tensor) name belongs to a task head, by its dotted components."""
    return any(part in TASK_HEAD_NAMES for part in name.lower().split("."))


# ---------------------------------------------------------------------------------------------------------
# Reading the blocks from names
# ---------------------------------------------------------------------------------------------------------


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _attention_layouts(linears: Mapping[str, tuple[int, int]], strict: bool) -> list[tuple[str, str, str, str, str]]:
    """(block, query, key, value, output) module names, in the order of `linears`. A block whose query/key/value
    are there but whose output projection is not: a StructureError when `strict` (a model to prune or compact),
    else left out (a checkpoint to report on)."""
    found = []
    for name in linears:
        for q, k, v, o in ATTENTION_LAYOUTS:
            if not name.endswith(f".{q}") and name != q:
                continue
            prefix = name[: -len(q)].rstrip(".")
            key, value = _join(prefix, k), _join(prefix, v)
            if key not in linears or value not in linears:
                continue
            output = _join(prefix, o) if o else _join(_parent(prefix), "output.dense")
            if output not in linears:
                if not strict:
                    continue
                raise StructureError(f"module `{prefix}` has query/key/value projections but no output projection "
                                     f"where prunecli looks for it (`{output}`)", hint=_UNSUPPORTED_HINT)
            found.append((prefix, name, key, value, output))
            break
    return found


def _feed_forward_layouts(linears: Mapping[str, tuple[int, int]]) -> list[tuple[str, str, str]]:
    """(block, up, down) module names whose shapes pair up, in the order of `linears`."""
    found = []
    for name in linears:
        for up, down in FEED_FORWARD_LAYOUTS:
            if not name.endswith(f".{up}") and name != up:
                continue
            prefix = name[: -len(up)].rstrip(".")
            down_name = _join(prefix, down)
            if down_name not in linears:
                continue
            (up_out, up_in), (down_out, down_in) = linears[name], linears[down_name]
            if up_out != down_in or up_in != down_out:
                continue
            if up == "intermediate.dense" and not any(n.startswith(_join(prefix, "attention.")) for n in linears):
                continue  # BERT's `output.dense` only pairs with `intermediate.dense` inside a layer
            found.append((prefix, name, down_name))
            break
    return found


def head_size_in(config: Mapping[str, Any] | None) -> int | None:
    """The attention head size a model config records (`head_dim`, or hidden size over head count)."""
    if not config:
        return None
    for key in _HEAD_SIZE_ATTRS:
        if isinstance(config.get(key), int) and config[key] > 0:
            return int(config[key])
    hidden = config.get("hidden_size", config.get("dim"))
    heads = next((config[k] for k in HEAD_COUNT_ATTRS if isinstance(config.get(k), int)), None)
    return hidden // heads if isinstance(hidden, int) and heads else None


def read_weights(shapes: Mapping[str, Sequence[int]], config: Mapping[str, Any] | None = None,
                 head_counts: Mapping[str, int] | None = None) -> Structure:
    """The structure of a checkpoint from its tensor names and shapes (`{name: shape}`; no model, no torch).

    Head geometry: `head_counts` (heads per attention block, e.g. a recipe's `pruned_units`) where given,
    else the head size `config` records; an attention block of unknown geometry is left out. The
    activation of a feed-forward block is the one `config` names (`hidden_act`, `activation`,
    `activation_function`).
    """
    linears = {name[: -len(".weight")]: (int(shape[0]), int(shape[1])) for name, shape in shapes.items()
               if name.endswith(".weight") and len(shape) == 2}
    head_size = head_size_in(config)
    attention = []
    for block, q, k, v, o in _attention_layouts(linears, strict=False):
        projected = linears[q][0]
        heads = (head_counts or {}).get(block)
        size = projected // heads if heads else head_size
        if size and projected % size == 0:
            attention.append(AttentionBlock(block, q, k, v, o, projected // size, size))
    activation = next((str(config[k]) for k in _ACTIVATION_CONFIG_KEYS if config and config.get(k)), None)
    ffn = [FeedForwardBlock(block, up, down, linears[up][0], activation)
           for block, up, down in _feed_forward_layouts(linears)]
    return Structure(tuple(attention), tuple(ffn), tuple(n for n in linears if is_task_head(n)))


def read_model(model: nn.Module) -> Structure:
    """The structure of a built model: blocks from its Linear modules' names, head geometry and activations
    from the modules' attributes (StructureError for an attention layout it cannot map)."""
    return _read_model(model, with_attention=True)


def _read_model(model: nn.Module, with_attention: bool) -> Structure:
    from torch import nn

    modules = dict(model.named_modules())
    linears = {n: (m.out_features, m.in_features) for n, m in modules.items() if isinstance(m, nn.Linear)}
    attention = []
    for block, q, k, v, o in _attention_layouts(linears, strict=True) if with_attention else ():
        heads, size = _head_geometry(modules[block], block, linears[q][0])
        attention.append(AttentionBlock(block, q, k, v, o, heads, size))
    claimed = {b.name for b in attention}
    unmapped = [(n, m) for n, m in modules.items() if _looks_like_attention(m) and n not in claimed
                and not any(n.startswith(c + ".") or c.startswith(n + ".") for c in claimed)]
    if with_attention and unmapped and not attention:
        name, module = unmapped[0]
        raise StructureError(
            f"cannot map the attention of this model: module `{name}` ({type(module).__name__}) has none of the "
            "query/key/value projection layouts prunecli knows", hint=_UNSUPPORTED_HINT)
    ffn = [FeedForwardBlock(block, up, down, linears[up][0], _activation_path(modules[block], block, up))
           for block, up, down in _feed_forward_layouts(linears)]
    return Structure(tuple(attention), tuple(ffn), tuple(n for n in linears if is_task_head(n)))


def attention_blocks(model: nn.Module) -> list[AttentionBlock]:
    """Every self-attention block of `model`, in module order (StructureError for a layout it cannot map)."""
    return list(read_model(model).attention)


def feed_forward_blocks(model: nn.Module) -> list[FeedForwardBlock]:
    """Every feed-forward block of `model` (an up projection followed by a down projection), in module order;
    its attention is not read, so a model with an attention layout prunecli cannot map still has these."""
    return list(_read_model(model, with_attention=False).feed_forward)


def _looks_like_attention(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return ("attention" in name or name.endswith("attn")) and "output" not in name


def _head_geometry(module: nn.Module, name: str, projected: int) -> tuple[int, int]:
    heads = next((int(getattr(module, a)) for a in HEAD_COUNT_ATTRS if isinstance(getattr(module, a, None), int)),
                 None)
    size = next((int(getattr(module, a)) for a in _HEAD_SIZE_ATTRS if isinstance(getattr(module, a, None), int)),
                None)
    if size is None and heads:
        size = projected // heads
    if size and projected % size == 0:
        return projected // size, size
    raise StructureError(f"cannot tell the head size of attention module `{name}` ({type(module).__name__})",
                         hint="it needs an attention_head_size, head_dim or num_attention_heads attribute.")


def _activation_path(block_module: nn.Module, block: str, up: str) -> str | None:
    """The path (below the block) of the activation beside the up projection, when one is found."""
    holder_path = _parent(up[len(block):].lstrip("."))
    holder = block_module
    for part in filter(None, holder_path.split(".")):
        holder = getattr(holder, part)
    for attr in _ACTIVATION_ATTRS:
        if callable(getattr(holder, attr, None)):
            return _join(holder_path, attr)
    return None


def activation_of(model: nn.Module, block: FeedForwardBlock):
    """The activation function between a block's up and down projections (None when it was not found)."""
    if block.activation is None:
        return None
    target = model.get_submodule(block.name) if block.name else model
    for part in block.activation.split("."):
        target = getattr(target, part)
    return target


# ---------------------------------------------------------------------------------------------------------
# What compact can remove
# ---------------------------------------------------------------------------------------------------------


def zero_lines(zeros: np.ndarray) -> dict[str, np.ndarray]:
    """All-zero rows and columns of a 2-D zero mask (a 1-D mask, e.g. a bias: its zeros as `rows`)."""
    if zeros.ndim == 1:
        return {"rows": np.asarray(zeros, dtype=bool)}
    return {"rows": zeros.all(axis=1), "cols": zeros.all(axis=0)}


def removable_heads(block: AttentionBlock, output_cols: np.ndarray, value_rows: np.ndarray,
                    value_bias: np.ndarray | None) -> np.ndarray:
    """`[heads]`: the heads compaction removes exactly.

    A head whose output-projection columns are all zero contributes nothing, whatever its query, key and
    value compute; so does one whose value rows and value bias (`value_bias`: its zeros; None when the
    projection has no bias) are all zero, since attention only mixes its values.
    """
    d = block.head_size
    silent_output = output_cols.reshape(-1, d).all(axis=1)
    value_zero = value_rows if value_bias is None else value_rows & value_bias
    return silent_output | value_zero.reshape(-1, d).all(axis=1)


def kept_heads(removable: np.ndarray) -> list[int]:
    """Head indices compaction keeps: the others, or one silent head when every head goes (so the attention
    module keeps a shape; its zero output columns add nothing)."""
    kept = [int(h) for h in np.flatnonzero(~removable)]
    return kept or [0]


def removable_neurons(block: FeedForwardBlock, up_rows: np.ndarray, down_cols: np.ndarray) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """(`silent`, `folded`), each `[neurons]`: the neurons compaction removes exactly.

    A neuron whose down-projection column is zero contributes nothing (`silent`). One whose up-projection
    row is zero outputs the constant `act(bias)`, whose contribution is folded into the down projection's
    bias before the neuron goes (`folded`); without a known activation that constant cannot be computed,
    so such a neuron is kept.
    """
    silent = np.asarray(down_cols, dtype=bool)
    folded = up_rows & ~silent if block.activation is not None else np.zeros_like(silent)
    return silent, folded


@dataclass
class CompactionPlan:
    """What compaction keeps: per attention block the head indices, per feed-forward block the neurons.

    `summary()` is the one per-layer count the report, the model card, `inspect` and `compact` show.
    """

    heads: dict[str, list[int]] = field(default_factory=dict)
    neurons: dict[str, list[int]] = field(default_factory=dict)
    folded: dict[str, list[int]] = field(default_factory=dict)  # neurons whose constant output is folded
    head_totals: dict[str, int] = field(default_factory=dict)
    neuron_totals: dict[str, int] = field(default_factory=dict)

    @property
    def heads_removed(self) -> int:
        return sum(self.head_totals[b] - len(kept) for b, kept in self.heads.items())

    @property
    def neurons_removed(self) -> int:
        return sum(self.neuron_totals[b] - len(kept) for b, kept in self.neurons.items())

    def summary(self) -> list[dict[str, Any]]:
        """Per layer (attention and feed-forward blocks in order): units kept of units."""
        out = []
        for name, kept in self.heads.items():
            out.append({"block": name, "unit": "head", "kept": len(kept), "of": self.head_totals[name]})
        for name, kept in self.neurons.items():
            out.append({"block": name, "unit": "neuron", "kept": len(kept), "of": self.neuron_totals[name],
                        "folded": len(self.folded.get(name, []))})
        return out


def plan_units(structure: Structure, lines: Mapping[str, Mapping[str, np.ndarray]]) -> CompactionPlan:
    """The heads and neurons compaction removes, from the zero lines (`zero_lines`) of the tensors that
    `structure.zero_lines_needed()` names. A block whose tensors are not all in `lines` is left out (a
    missing value bias means the projection has none)."""
    plan = CompactionPlan()
    for a in structure.attention:
        output, value = lines.get(f"{a.output}.weight"), lines.get(f"{a.value}.weight")
        if output is None or value is None or output["cols"].size != a.num_heads * a.head_size:
            continue
        bias = lines.get(f"{a.value}.bias")
        removable = removable_heads(a, output["cols"], value["rows"], bias["rows"] if bias else None)
        plan.heads[a.name] = kept_heads(removable)
        plan.head_totals[a.name] = a.num_heads
    for f in structure.feed_forward:
        up, down = lines.get(f"{f.up}.weight"), lines.get(f"{f.down}.weight")
        if up is None or down is None:
            continue
        silent, folded = removable_neurons(f, up["rows"], down["cols"])
        plan.neurons[f.name] = [int(i) for i in np.flatnonzero(~(silent | folded))]
        plan.folded[f.name] = [int(i) for i in np.flatnonzero(folded)]
        plan.neuron_totals[f.name] = f.size
    return plan
