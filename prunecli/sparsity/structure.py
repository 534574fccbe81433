"""The structure of a transformer encoder: which Linear layers form an attention block or a feed-forward block.

Head and neuron pruning (and compaction) need more than a list of Linear layers: an attention head is
`head_size` rows of the query, key and value projections and the same columns of the output projection;
a feed-forward neuron is one row of the up projection and the same column of the down projection. This
module reads that structure from the model's modules (by their attributes, not their class names):

- BERT-like self-attention (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, MiniLM): a module with `query`,
  `key`, `value` Linear children whose parent has `output.dense` (the output projection);
- DistilBERT (`q_lin`, `k_lin`, `v_lin`, `out_lin`), MPNet (`q`, `k`, `v`, `o`) and the `q_proj`,
  `k_proj`, `v_proj`, `out_proj`/`o_proj` naming, with the output projection beside them;
- feed-forward: a layer with `intermediate.dense` and `output.dense` (BERT-like), or a module with
  `lin1`/`lin2` (DistilBERT) or `fc1`/`fc2`.

The head size comes from the attention module (`attention_head_size`, `head_dim`) or from its head
count (`num_attention_heads`, `n_heads`, `num_heads`). A model whose attention-like modules cannot be
mapped raises `StructureError` (a UserError: exit 2 on the command line) naming the module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prunecli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

# (query, key, value, output-beside-them) attribute names of the supported self-attention layouts; an output
# of None means the parent's `output.dense` (BERT's BertSelfOutput).
_ATTENTION_LAYOUTS = (
    ("query", "key", "value", None),
    ("q_lin", "k_lin", "v_lin", "out_lin"),
    ("q_proj", "k_proj", "v_proj", "out_proj"),
    ("q_proj", "k_proj", "v_proj", "o_proj"),
    ("q", "k", "v", "o"),
)
_HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads", "num_heads")
_HEAD_SIZE_ATTRS = ("attention_head_size", "head_dim", "head_size")
_FFN_LAYOUTS = (("intermediate.dense", "output.dense"), ("lin1", "lin2"), ("fc1", "fc2"))
_ACTIVATION_ATTRS = ("intermediate_act_fn", "activation", "activation_fn", "act_fn", "act")


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


@dataclass(frozen=True)
class FeedForwardBlock:
    """One feed-forward block: its up (`[size, hidden]`) and down (`[hidden, size]`) projections."""

    name: str  # the module holding both (e.g. `bert.encoder.layer.0`, `distilbert.transformer.layer.0.ffn`)
    up: str
    down: str
    size: int  # neurons
    activation: str | None  # module path of the activation between them (for constant folding), if found

    @property
    def members(self) -> tuple[str, str]:
        return (self.up, self.down)


def _linear(module: nn.Module, path: str):
    from torch import nn

    target = module
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target if isinstance(target, nn.Linear) else None


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def attention_blocks(model: nn.Module) -> list[AttentionBlock]:
    """Every self-attention block of `model`, in module order (StructureError for a layout it cannot map)."""
    modules = dict(model.named_modules())
    blocks, claimed = [], set()
    for name, module in modules.items():
        for q, k, v, o in _ATTENTION_LAYOUTS:
            lq, lk, lv = _linear(module, q), _linear(module, k), _linear(module, v)
            if lq is None or lk is None or lv is None:
                continue
            if o is not None:
                out_name, lo = _join(name, o), _linear(module, o)
            else:
                parent = name.rsplit(".", 1)[0] if "." in name else ""
                out_name, lo = _join(parent, "output.dense"), _linear(modules.get(parent, model), "output.dense")
            if lo is None:
                raise StructureError(
                    f"module `{name}` ({type(module).__name__}) has query/key/value projections but no output "
                    f"projection where prunecli looks for it (`{out_name}`)",
                    hint="head pruning and compaction support BERT, RoBERTa, DistilBERT, MiniLM and similar "
                    "encoders; use an element pattern (4x1, 2:4) for this model.",
                )
            heads, size = _head_geometry(module, name, lq.out_features)
            blocks.append(AttentionBlock(name, _join(name, q), _join(name, k), _join(name, v), out_name, heads, size))
            claimed.add(name)
            break
    unmapped = [(n, m) for n, m in modules.items() if _looks_like_attention(m) and n not in claimed
                and not any(n.startswith(c + ".") or c.startswith(n + ".") for c in claimed)]
    if unmapped and not blocks:
        name, module = unmapped[0]
        raise StructureError(
            f"cannot map the attention of this model: module `{name}` ({type(module).__name__}) has none of the "
            "query/key/value projection layouts prunecli knows",
            hint="head pruning and compaction support BERT, RoBERTa, DistilBERT, MiniLM and similar encoders; "
            "use an element pattern (4x1, 2:4) for this model.",
        )
    return blocks


def _looks_like_attention(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return ("attention" in name or name.endswith("attn")) and "output" not in name


def _head_geometry(module: nn.Module, name: str, projected: int) -> tuple[int, int]:
    heads = next((int(getattr(module, a)) for a in _HEAD_COUNT_ATTRS if isinstance(getattr(module, a, None), int)),
                 None)
    size = next((int(getattr(module, a)) for a in _HEAD_SIZE_ATTRS if isinstance(getattr(module, a, None), int)),
                None)
    if size is None and heads:
        size = projected // heads
    if size and projected % size == 0:
        return projected // size, size
    raise StructureError(f"cannot tell the head size of attention module `{name}` ({type(module).__name__})",
                         hint="it needs an attention_head_size, head_dim or num_attention_heads attribute.")


def feed_forward_blocks(model: nn.Module) -> list[FeedForwardBlock]:
    """Every feed-forward block of `model` (an up projection followed by a down projection), in module order."""
    blocks = []
    for name, module in model.named_modules():
        for up, down in _FFN_LAYOUTS:
            lu, ld = _linear(module, up), _linear(module, down)
            if lu is None or ld is None or lu.out_features != ld.in_features or lu.in_features != ld.out_features:
                continue
            if up == "intermediate.dense" and _linear(module, "attention.output.dense") is None and \
                    _linear(module, "attention.self.query") is None and not hasattr(module, "attention"):
                continue  # BERT's `output.dense` only pairs with `intermediate.dense` inside a layer
            activation = _activation(module, up)
            blocks.append(FeedForwardBlock(name, _join(name, up), _join(name, down), lu.out_features, activation))
            break
    return blocks


def _activation(module: nn.Module, up: str) -> str | None:
    holder_path = up.rsplit(".", 1)[0] if "." in up else ""
    holder = module
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
