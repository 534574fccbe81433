"""Recipe groups -> model layers: which Linear-like modules each group prunes, and which it never touches.

The pruner never prunes a task head (a module with a `prunecli.structure.TASK_HEAD_NAMES` name component, or
the model's output embeddings); `inspect` labels heads with the same list.
torch is imported only by the functions that walk a model, so the names can be read without it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

from prunecli.errors import RecipeError
from prunecli.structure import TASK_HEAD_NAMES, is_task_head

__all__ = ["TASK_HEAD_NAMES", "is_task_head", "match_blocks", "match_layers", "op_classes"]

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from prunecli.sparsity.recipe import ResolvedGroup


class MatchedLayer(NamedTuple):
    name: str
    module: nn.Module
    transposed: bool  # HF Conv1D stores its weight as [in, out]


def op_classes() -> dict[str, type]:
    """The module classes a recipe's `pruning_op_types` can name."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    return {"Linear": nn.Linear, "Conv1D": Conv1D}


def _output_embedding_ids(model: nn.Module) -> set[int]:
    from torch import nn

    get_out = getattr(model, "get_output_embeddings", None)
    if not callable(get_out):
        return set()
    try:
        out = get_out()
    except (NotImplementedError, AttributeError):
        return set()
    return {id(out)} if isinstance(out, nn.Module) else set()


def _candidates(model: nn.Module) -> tuple[list[tuple[str, nn.Module, str]], list[str]]:
    """(name, module, op type) of every prunable module, and the task-head modules left out."""
    import torch

    classes = op_classes()
    head_ids = _output_embedding_ids(model)
    candidates, heads = [], []
    seen_weights: set[int] = set()
    for name, module in model.named_modules():
        kind = next((k for k, cls in classes.items() if isinstance(module, cls)), None)
        if kind is None or not isinstance(getattr(module, "weight", None), torch.Tensor):
            continue
        if id(module) in head_ids or is_task_head(name):
            heads.append(name)
            continue
        if id(module.weight) in seen_weights:  # a weight shared by two modules is pruned once
            continue
        seen_weights.add(id(module.weight))
        candidates.append((name, module, kind))
    return candidates, heads


def match_layers(model: nn.Module, groups: list[ResolvedGroup], source: str | None,
                 check_shape=None) -> tuple[list[list[MatchedLayer]], list[str]]:
    """The layers of each group, in module order, and the head layers left out.

    `check_shape(group, name, out_features, in_features)` returns why a layer cannot take the group's
    pattern (or None). Raises RecipeError when a group matches no layer (the hint names the model's
    prunable layer types), a layer is in two groups, a weight is not 2-D, or a shape does not fit.
    """
    candidates, heads = _candidates(model)
    owner: dict[str, ResolvedGroup] = {}
    result = []
    for g in groups:
        matched = []
        for name, module, kind in candidates:
            if kind not in g.pruning_op_types:
                continue
            if g.op_names and not any(re.search(p, name) for p in g.op_names):
                continue
            if any(re.search(p, name) for p in g.excluded_op_names):
                continue
            if name in owner:
                first = owner[name]
                raise RecipeError(
                    f"layer `{name}` is matched by two groups: `{first.path or 'top level'}` and `{g.path}`",
                    "Each layer may belong to one group: narrow op_names or add excluded_op_names.",
                    path=g.key_path("op_names"),
                    source=source,
                )
            owner[name] = g
            transposed = kind == "Conv1D"
            w = module.weight
            if w.dim() != 2:
                raise RecipeError(
                    f"layer `{name}` has a {w.dim()}-D weight; only 2-D (Linear-like) weights are pruned",
                    path=g.key_path("pruning_op_types"),
                    source=source,
                )
            out_f, in_f = (w.shape[1], w.shape[0]) if transposed else (w.shape[0], w.shape[1])
            reason = check_shape(g, name, out_f, in_f) if check_shape is not None else None
            if reason:
                raise RecipeError(
                    f"layer `{name}` [{out_f} out x {in_f} in] cannot take pattern {g.pattern}: {reason}",
                    f'Exclude it (add "{re.escape(name)}" to excluded_op_names) or use another pattern for it.',
                    path=g.key_path("pattern"),
                    source=source,
                )
            matched.append(MatchedLayer(name, module, transposed))
        if not matched:
            raise _no_match_error(g, candidates, heads, source)
        if g.layers is not None and list(g.layers) != [m.name for m in matched]:
            raise RecipeError(
                f"group `{g.path or 'top level'}` lists layers {list(g.layers)[:3]}... but its op_names match "
                f"{[m.name for m in matched][:3]}...",
                "A saved prune_recipe.json fits the model it was made for; remove `layers` to re-match.",
                path=g.key_path("layers"),
                source=source,
            )
        result.append(matched)
    return result, heads


def _no_match_error(g: ResolvedGroup, candidates, heads: list[str], source: str | None) -> RecipeError:
    allowed = [n for n, _, k in candidates if k in g.pruning_op_types]
    head_note = " (the task head is never pruned)" if heads else ""
    present = sorted({k for _, _, k in candidates})
    if not allowed and present:
        types = " and ".join(present)
        listed = ", ".join(f'"{t}"' for t in present)
        hint = (f"this model's prunable layers are {types} (e.g. {candidates[0][0]}): add "
                f"`\"pruning_op_types\": [{listed}]` to the recipe.")
    else:
        sample = ", ".join(allowed[:4]) + (", ..." if len(allowed) > 4 else "")
        hint = (f"op_names are regular expressions searched in module names such as: {sample or 'none found'}; "
                f"allowed types: {', '.join(g.pruning_op_types)}.")
    return RecipeError(f"group `{g.path or 'top level'}` matches no layer{head_note}", hint,
                       path=g.key_path("op_names"), source=source)


def match_blocks(model: nn.Module, group: ResolvedGroup, source: str | None):
    """The attention blocks (pattern `head`) or feed-forward blocks (pattern `neuron`) a group prunes.

    With no op_names every block of that kind is selected; op_names (and excluded_op_names) narrow the
    selection: a block is in the group when one of its member layers matches (`re.search`).
    """
    from prunecli.sparsity.patterns import parse_pattern
    from prunecli.structure import attention_blocks, feed_forward_blocks

    kind = parse_pattern(group.pattern).name
    blocks = attention_blocks(model) if kind == "head" else feed_forward_blocks(model)
    what = "attention" if kind == "head" else "feed-forward"
    if not blocks:
        raise RecipeError(
            f"group `{group.path or 'top level'}` prunes {kind}s, but prunecli finds no {what} block in this model",
            "Head and neuron patterns support BERT, RoBERTa, DistilBERT, MiniLM and similar encoders; use an "
            "element pattern (4x1, 2:4) for this model.",
            path=group.key_path("pattern"), source=source,
        )

    def matches(patterns, block) -> bool:
        return any(re.search(p, member) for p in patterns for member in block.members)

    selected = [b for b in blocks if (not group.op_names or matches(group.op_names, b))
                and not matches(group.excluded_op_names, b)]
    if not selected:
        sample = ", ".join(m for b in blocks[:2] for m in b.members[:2])
        raise RecipeError(
            f"group `{group.path or 'top level'}` matches no {what} block",
            f"op_names are regular expressions searched in the blocks' layer names, such as: {sample}.",
            path=group.key_path("op_names"), source=source,
        )
    return selected
