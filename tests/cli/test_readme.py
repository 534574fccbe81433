"""The README's commands are true: every `prunecli ...` line of the README and of docs/ parses with the real
CLI (known options, valid values), the Makefile targets it names exist, its Python example is the one the
tests run, its results table is the one rendered from bench/results, and it stays a short user's guide."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from prunecli.cli.app import app

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = {path.name: path.read_text(encoding="utf-8") for path in sorted((REPO / "docs").glob("*.md"))}


def _fenced(lang: str, text: str = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _commands(prog: str, texts: tuple[str, ...] = (README,)) -> list[list[str]]:
    commands = []
    blocks = [b for text in texts for lang in ("bash", "console") for b in _fenced(lang, text)]
    for block in blocks:
        block = re.sub(r"^\$ ", "", block, flags=re.M)
        text = re.sub(r"\\\n\s*", " ", block)  # join continued lines
        for line in text.splitlines():
            line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
            words = shlex.split(line) if line and "..." not in line else []  # `...`: a placeholder, not a command
            if ">" in words:  # a shell redirection is not an argument
                words = words[: words.index(">")]
            if prog in words:
                commands.append(words[words.index(prog) + 1:])
    return commands


PRUNECLI = _commands("prunecli", (README, *DOCS.values()))


def test_readme_and_docs_show_every_main_command():
    assert {words[0] for words in _commands("prunecli") if words} >= {"prune"}
    names = {words[0] for words in PRUNECLI if words}
    assert {"finetune", "prune", "evaluate", "inspect"} <= names
    assert len(PRUNECLI) >= 10


def test_readme_is_a_short_guide():
    # A user's guide, not a notebook: the detail lives in docs/ and bench/. The budget grew from 12,000 bytes
    # when the guide gained question answering, NER, deployment and the table of task figures.
    assert len(README.encode("utf-8")) <= 14_000


def test_readme_results_table_is_the_rendered_one():
    import sys

    sys.path.insert(0, str(REPO))
    from bench import render_compact, render_results, run_task_bench, summary

    records = render_results.load_results(REPO / "bench" / "results")
    results = REPO / "bench" / "results"
    for expected in (summary.readme_block(records), render_compact.readme_block(records, results),
                     summary.demo_block(results), run_task_bench.readme_block(render_results.task_results(results))):
        assert expected in README, "re-render with: .venv/bin/python bench/render_results.py --readme"


@pytest.mark.parametrize("words", PRUNECLI, ids=[" ".join(w[:2]) for w in PRUNECLI])
def test_every_readme_command_parses(words):
    group = typer.main.get_command(app)
    cmd = group.get_command(click.Context(group), words[0])
    assert cmd is not None, f"README names an unknown command: prunecli {words[0]}"
    try:
        cmd.make_context(words[0], list(words[1:]))
    except click.exceptions.Exit:  # --help and friends
        pass
    except click.UsageError as err:
        pytest.fail(f"README command `prunecli {' '.join(words)}` does not parse: {err}")


def test_make_targets_named_in_the_readme_exist():
    makefile = (REPO / "Makefile").read_text()
    in_code = re.findall(r"`make (\w+)`", README) + [
        m for block in _fenced("bash") for m in re.findall(r"^make (\w+)", block, flags=re.M)
    ]
    assert in_code
    for target in set(in_code):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


def test_readme_python_example_is_the_tested_one():
    docs = (REPO / "docs" / "python_api.md").read_text(encoding="utf-8")
    tested = re.findall(r"```python\n(.*?)```", docs, flags=re.S)[0]
    assert _fenced("python")[0] == tested  # tests/unit/test_pruner.py executes the docs' block


def test_readme_links_resolve():
    for target in re.findall(r"\]\(((?!https?://)[^)#]+)", README):
        assert (REPO / target).exists(), target


def test_readme_trainer_example_runs_as_written(tmp_path, monkeypatch):
    """The PruningCallback block, run as written (its imports and TrainingArguments) on a tiny BERT and the
    `model` and `train_dataset` the text says it takes: its epochs leave room for warm-up and cool-down, and the
    shipped recipe it names prunes the model to its target."""
    import torch
    from transformers import BertForSequenceClassification, BertTokenizer

    from prunecli.sparsity.recipe import load_recipe
    from tests.helpers import make_tiny_bert, sentiment_rows

    [block] = [b for b in _fenced("python") if "PruningCallback" in b]
    folder = make_tiny_bert(tmp_path / "bert")
    tok = BertTokenizer.from_pretrained(folder)
    rows = sentiment_rows(16)
    enc = tok([r["sentence"] for r in rows], padding="max_length", max_length=12, return_tensors="pt")
    train_dataset = [{**{k: v[i] for k, v in enc.items()}, "labels": torch.tensor(r["label"])}
                     for i, r in enumerate(rows)]
    model = BertForSequenceClassification.from_pretrained(folder)
    monkeypatch.chdir(tmp_path)
    scope = {"model": model, "train_dataset": train_dataset}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102
    callback = next(c for c in scope["trainer"].callback_handler.callbacks if c.__class__.__name__ ==
                    "PruningCallback")
    target = load_recipe("mrpc_4x1").target_sparsity
    assert callback.pruner.current_sparsity() == pytest.approx(target, abs=0.01)
