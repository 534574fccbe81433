"""Readable groups of dotted layer names for tables: `encoder.layer.{0-5}.attention.self.{query,key,value}`.

Terminal tables of a model list dozens of names that differ in a layer index or a last component, and a
table squeezed to 80 columns used to cut them into fragments. This module only transforms names (pure
functions, no rich, no report): tables decide which names may share a row (e.g. only layers whose shown
statistics are identical) and pass each such set here.

Contract of `group_names`: every distinct input name is in exactly one group, and expanding a group (the
product of its slots) gives back exactly its names. Two names (or groups) merge when they differ in one
dotted component only, and that component is the last one or a numeric index; a group varies in at most
one numeric index (besides the last component), so its text stays a readable product of two lists.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_INDEX = re.compile(r"0|[1-9]\d*")  # canonical integers only: "01" would not survive int() and back
_PLAIN = re.compile(r"[^{},\-]+")  # components that may appear inside braces without making them ambiguous


@dataclass(frozen=True)
class NameGroup:
    """Names that a table shows as one: `slots[i]` are the alternatives of dotted component i.

    `names` are the member names in input order; `text` is the display form (a slot with several
    alternatives in braces, runs of three or more consecutive indices as `a-b`).
    """

    slots: tuple[tuple[str, ...], ...]
    names: tuple[str, ...]

    @property
    def text(self) -> str:
        return ".".join(_slot_text(slot) for slot in self.slots)

    def expand(self) -> list[str]:
        """Every name the group stands for (the product of its slots), in slot order."""
        return [".".join(parts) for parts in itertools.product(*self.slots)]


def _slot_text(slot: tuple[str, ...]) -> str:
    if len(slot) == 1:
        return slot[0]
    if all(_INDEX.fullmatch(s) for s in slot):
        numbers = sorted(int(s) for s in slot)
        runs: list[list[int]] = []
        for n in numbers:
            if runs and n == runs[-1][-1] + 1:
                runs[-1].append(n)
            else:
                runs.append([n])
        parts = [f"{r[0]}-{r[-1]}" if len(r) >= 3 else ",".join(map(str, r)) for r in runs]
        return "{" + ",".join(parts) + "}"
    return "{" + ",".join(slot) + "}"


# ---- grouping ---------------------------------------------------------------------------------------------

_Slots = tuple[tuple[str, ...], ...]


def _numeric(slot: tuple[str, ...]) -> bool:
    return all(_INDEX.fullmatch(s) for s in slot)


def _mergeable(slot: tuple[str, ...]) -> bool:
    return all(_PLAIN.fullmatch(s) for s in slot)


def _merge_at(groups: list[_Slots], position: int | None) -> list[_Slots]:
    """One pass: merge the groups that are equal except at `position` (None: the last component).

    A numeric position merges only numeric alternatives, and only in groups with no other varying index;
    order is kept (a merged group sits where its first member was).
    """
    buckets: dict[tuple, int] = {}
    out: list[list[tuple[str, ...]]] = []
    for slots in groups:
        n = len(slots)
        p = n - 1 if position is None else position
        key = None
        if position is None and n >= 2 and _mergeable(slots[p]):
            key = (n, slots[:p])
        elif position is not None and p < n - 1 and _numeric(slots[p]) and not any(
                len(s) > 1 for i, s in enumerate(slots[:-1]) if i != p and _numeric(s)):
            key = (n, p, slots[:p], slots[p + 1 :])
        if key is not None and key in buckets:
            merged = out[buckets[key]]
            merged[p] = merged[p] + tuple(s for s in slots[p] if s not in merged[p])
            continue
        if key is not None:
            buckets[key] = len(out)
        out.append(list(slots))
    return [tuple(s) for s in out]


def _grouped(names: Sequence[str], last: bool, index: bool, last_first: bool) -> list[_Slots]:
    groups: list[_Slots] = [tuple((c,) for c in name.split(".")) for name in names]
    while True:
        before = len(groups)
        steps: list[int | None] = []
        positions = sorted({i for g in groups for i in range(len(g) - 1)}) if index else []
        if last and last_first:
            steps.append(None)
        steps += positions
        if last and not last_first:
            steps.append(None)
        for position in steps:
            groups = _merge_at(groups, position)
        if len(groups) == before:
            return groups


def _build(slots_list: list[_Slots], names: Sequence[str]) -> list[NameGroup]:
    order = {name: i for i, name in enumerate(names)}
    groups = []
    for slots in slots_list:
        members = sorted((".".join(p) for p in itertools.product(*slots)), key=order.__getitem__)
        groups.append(NameGroup(tuple(_sorted_slot(s) for s in slots), tuple(members)))
    return sorted(groups, key=lambda g: order[g.names[0]])


def _sorted_slot(slot: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(slot, key=int)) if len(slot) > 1 and _numeric(slot) else slot


def group_names(names: Iterable[str], max_len: int | None = None) -> list[NameGroup]:
    """Group dotted names for display (see the module doc); groups are ordered by their first name.

    Both merge orders (last component first, indices first) are tried and the one with fewer groups kept.
    With `max_len`, a group whose text is longer is split along its last component (one group per last
    name, indices still merged) when every part then fits; an index range is never split, which would
    cost a row per layer, so a group that still does not fit is kept whole for the caller to wrap.
    """
    unique = list(dict.fromkeys(names))
    if not unique:
        return []
    groups = _build(_best(unique, last=True), unique)
    if max_len is None:
        return groups
    out: list[NameGroup] = []
    for group in groups:
        parts = [group]
        if len(group.text) > max_len and len(group.slots[-1]) > 1:
            split = _build(_best(group.names, last=False), group.names)
            if all(len(p.text) <= max_len for p in split):
                parts = split
        out.extend(parts)
    order = {name: i for i, name in enumerate(unique)}
    return sorted(out, key=lambda g: order[g.names[0]])


def _best(names: Sequence[str], last: bool) -> list[_Slots]:
    """The grouping with fewer groups of the two merge orders (with `last`, last components merge too)."""
    return min((_grouped(names, last, True, last_first) for last_first in (True, False)), key=len)


def common_prefix(names: Iterable[str]) -> str:
    """The leading dotted components shared by all names that a table may leave out, with its trailing dot.

    Empty for fewer than two distinct names. Never a whole name, and never so much that a name would
    start at or just before a numeric index: `bert.encoder.layer.0...` drops `bert.`, keeping
    `encoder.layer.0`, because `layer.0` alone or `0.attention` would no longer say what it indexes.
    """
    split = [name.split(".") for name in dict.fromkeys(names)]
    if len(split) < 2:
        return ""
    first = split[0]
    k = 0
    while all(len(parts) > k + 1 and parts[k] == first[k] for parts in split):
        k += 1
    while k and any(_INDEX.fullmatch(p[k]) or (len(p) > k + 1 and _INDEX.fullmatch(p[k + 1])) for p in split):
        k -= 1
    return ".".join(first[:k]) + "." if k else ""


def wrap_dotted(text: str, width: int, indent: str = "  ") -> list[str]:
    """`text` broken after dots into lines of at most `width` (continuations indented); a component that is
    longer than a line on its own stays whole, for the table to truncate as a last resort."""
    if len(text) <= width or width <= len(indent):
        return [text]
    pieces = re.findall(r"[^.]*\.|[^.]+$", text)
    lines, line = [], ""
    for piece in pieces:
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = indent + piece
        else:
            line += piece
    lines.append(line)
    return lines
