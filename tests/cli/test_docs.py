"""The command-line reference in docs/cli.md is the one generated from the commands: options, panels and
defaults cannot drift from the code (regenerate with `python -m prunecli.cli.reference`)."""

from __future__ import annotations

from pathlib import Path

from prunecli.cli.reference import BEGIN, END, options_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_docs_cli_holds_the_generated_option_tables():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    block = text[text.index(BEGIN): text.index(END) + len(END)] + "\n"
    assert block == options_markdown(), "regenerate with: python -m prunecli.cli.reference --write"


def test_every_command_and_option_default_is_documented():
    generated = options_markdown()
    for command in ("finetune", "prune", "evaluate", "inspect", "compact", "export", "benchmark", "schema", "demo"):
        assert f"### `prunecli {command}`" in generated
    from prunecli.config import TrainConfig

    # a default in the docs is the configuration's, not a copy
    assert f"| `--learning_rate` | `{TrainConfig().learning_rate}` |" in generated
    assert "| `--per_device_eval_batch_size` | `32` |" in generated  # evaluate's own default


def test_docs_recipes_holds_the_generated_key_table():
    from prunecli.cli.reference import KEYS_BEGIN, KEYS_END, recipe_keys_markdown

    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    block = text[text.index(KEYS_BEGIN): text.index(KEYS_END) + len(KEYS_END)] + "\n"
    assert block == recipe_keys_markdown(), "regenerate with: python -m prunecli.cli.reference --write"
    assert '| `excluded_op_names` | list of string | `["pooler"]` |' in block  # the recipe model's default
