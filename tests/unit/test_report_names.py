"""Grouping layer names for tables (`prunecli.report.names`): exact partitions, readable texts, prefixes."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prunecli.report.names import common_prefix, group_names, wrap_dotted
from tests.helpers import expand_text

BERT = [f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(6) for m in ("query", "key", "value")]

# Names as transformers spells them: a few containers, numeric indices, leaves; no `{},-`, as real names.
_component = st.one_of(
    st.sampled_from(["bert", "encoder", "layer", "layers", "h", "block", "attention", "self", "output", "mlp",
                     "query", "key", "value", "dense", "q_proj", "weight", "0x", "01"]),
    st.integers(0, 12).map(str),
)
_name = st.lists(_component, min_size=1, max_size=6).map(".".join)
_names = st.lists(_name, min_size=0, max_size=40)


def _is_index(component: str) -> bool:
    return re.fullmatch(r"0|[1-9][0-9]*", component) is not None


def _check_partition(names: list[str], groups) -> None:
    distinct = list(dict.fromkeys(names))
    members = [n for g in groups for n in g.names]
    assert sorted(members) == sorted(distinct)  # every name in exactly one group
    for g in groups:
        assert sorted(g.expand()) == sorted(g.names)  # a group stands for exactly its names
        assert sorted(expand_text(g.text)) == sorted(g.names)  # ... and so does its text
        assert list(g.names) == [n for n in distinct if n in set(g.names)]  # members in input order
        varying = [i for i, slot in enumerate(g.slots[:-1]) if len(slot) > 1]
        assert len(varying) <= 1  # besides the last component, at most one (numeric) index varies
        assert all(re.fullmatch(r"\d+", s) for i in varying for s in g.slots[i])
    firsts = [distinct.index(g.names[0]) for g in groups]
    assert firsts == sorted(firsts)  # groups in the order of their first name


@settings(max_examples=300, deadline=None)
@given(_names)
def test_groups_partition_the_names_exactly(names):
    _check_partition(names, group_names(names))


@settings(max_examples=300, deadline=None)
@given(_names, st.integers(1, 60))
def test_width_limited_groups_still_partition_and_fit_when_splittable(names, max_len):
    groups = group_names(names, max_len=max_len)
    _check_partition(names, groups)
    unlimited = {g.names: g for g in group_names(names)}
    for g in groups:
        # A group may exceed max_len only when it is unlimited grouping's own group (an index range that
        # cannot be split without a row per layer), for the table to wrap.
        assert len(g.text) <= max_len or g.names in unlimited


@settings(max_examples=300, deadline=None)
@given(_names)
@example(["bert.bert", "bert.01"])  # "01" is not a layer index: the prefix may end before it
@example(["bert.encoder.layer.0.attention", "bert.encoder.layer.1.attention"])
def test_common_prefix_is_shared_and_never_a_whole_name(names):
    prefix = common_prefix(names)
    if not prefix:
        return
    assert prefix.endswith(".") and len(set(names)) >= 2
    for name in names:
        assert name.startswith(prefix) and len(name) > len(prefix)
        rest = name[len(prefix):].split(".")
        # a layer index is a canonical integer (what ModuleList names are); "01" is a name like any other
        assert not _is_index(rest[0]) and not (len(rest) > 1 and _is_index(rest[1]))


@settings(max_examples=300, deadline=None)
@given(_name, st.integers(4, 40))
def test_wrap_dotted_breaks_only_after_dots(text, width):
    lines = wrap_dotted(text, width)
    assert lines[0] + "".join(line.removeprefix("  ") for line in lines[1:]) == text
    for line in lines:
        assert len(line) <= width or "." not in line.strip().rstrip(".")  # only one overlong component
    assert all(line.endswith(".") for line in lines[:-1])


def test_brief_example_groups_into_one_row():
    prefix = common_prefix(BERT)
    assert prefix == "bert."
    (group,) = group_names([n.removeprefix(prefix) for n in BERT])
    assert group.text == "encoder.layer.{0-5}.attention.self.{query,key,value}"
    assert len(group.names) == 18


@pytest.mark.parametrize(
    ("names", "texts"),
    [
        (["a.0.x", "a.2.x", "a.4.x"], ["a.{0,2,4}.x"]),
        (["a.0.x", "a.1.x", "a.2.x", "a.5.x"], ["a.{0-2,5}.x"]),
        (["a.0.x", "a.1.x"], ["a.{0,1}.x"]),
        (["a.01.x", "a.1.x"], ["a.01.x", "a.1.x"]),  # "01" is not an index (it would not round-trip)
        (["a.0.q", "a.0.k", "a.1.q"], ["a.0.{q,k}", "a.1.q"]),  # a tie: last components merge first
        (["q", "k"], ["q", "k"]),  # single components are not merged into a bare "{q,k}"
        (["m.0.b.1.x", "m.1.b.1.x", "m.0.b.2.x"], ["m.{0,1}.b.1.x", "m.0.b.2.x"]),  # one varying index
        (["enc.block.0.layer.0.q", "enc.block.0.layer.0.k", "enc.block.1.layer.0.q", "enc.block.1.layer.0.k"],
         ["enc.block.{0,1}.layer.0.{q,k}"]),
    ],
)
def test_grouping_examples(names, texts):
    assert [g.text for g in group_names(names)] == texts


def test_width_limit_splits_only_along_the_last_component():
    names = [n.removeprefix("bert.") for n in BERT]
    assert [g.text for g in group_names(names, max_len=45)] == [
        "encoder.layer.{0-5}.attention.self.query", "encoder.layer.{0-5}.attention.self.key",
        "encoder.layer.{0-5}.attention.self.value"]
    # Too narrow even for that: the whole group is kept (a row per layer would be worse than wrapping).
    assert [g.text for g in group_names(names, max_len=20)] == ["encoder.layer.{0-5}.attention.self.{query,key,value}"]


@pytest.mark.parametrize(
    ("names", "prefix"),
    [
        (BERT, "bert."),
        (["bert.embeddings.word_embeddings", "bert.encoder.layer.0.output.dense", "bert.pooler.dense"], "bert."),
        (["transformer.h.0.attn", "transformer.h.1.attn"], ""),  # `h.0` alone would not say what it indexes
        (["model.layers.0.q_proj", "model.layers.1.q_proj"], ""),
        (["bert.encoder.layer.3.attention.self.query", "bert.encoder.layer.3.output.dense"],
         "bert.encoder.layer.3."),
        (["a.b", "a.b"], ""),  # one distinct name
        (["classifier", "pooler"], ""),
    ],
)
def test_common_prefix_examples(names, prefix):
    assert common_prefix(names) == prefix
