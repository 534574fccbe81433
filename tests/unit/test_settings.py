"""One declaration per setting: the run configuration, the options, the recipe model and its checks all read
`prunecli.settings`, and the library reads it without the run configuration, the CLI or the training loop."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prunecli.config import DataConfig, DistillConfig, PruneConfig, RunConfig, TrainConfig, check_values
from prunecli.errors import UserError
from prunecli.settings import BY_NAME, GROUP_SETTINGS, SETTINGS, TRAINING_SETTINGS, section

REPO = Path(__file__).resolve().parents[2]
SECTIONS = {"data": DataConfig, "train": TrainConfig, "prune": PruneConfig, "distill": DistillConfig}


def test_config_fields_and_defaults_are_the_settings():
    for name, cls in SECTIONS.items():
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        assert fields == {s.name: s.option_default for s in section(name)}
    assert PruneConfig().target_sparsity is None  # a group key's option: the recipe decides
    assert TrainConfig().learning_rate == BY_NAME["learning_rate"].default == 5e-5


def test_recipe_model_is_built_from_the_settings():
    from prunecli.sparsity.recipe import DEFAULTS, OPTION_NAMES, GroupSettings, PruningGroup
    from prunecli.sparsity.recipe_training import TRAINING_KEYS, TrainingSettings

    assert list(DEFAULTS) == list(GROUP_SETTINGS)
    assert DEFAULTS == {key: list(s.default) if isinstance(s.default, tuple) else s.default
                        for key, s in GROUP_SETTINGS.items()}
    assert OPTION_NAMES == {"pruning_pattern": "pattern"}  # the alias is the setting's recipe_key
    for key, setting in GROUP_SETTINGS.items():
        assert GroupSettings.model_fields[key].description == setting.help
        assert PruningGroup.model_fields[key].default is None  # unset in a group: inherited
    assert TRAINING_KEYS == tuple(TRAINING_SETTINGS)
    for key, setting in TRAINING_SETTINGS.items():
        assert TrainingSettings.model_fields[key].description == setting.help
        assert setting.default == getattr(RunConfig(prune=PruneConfig(), distill=DistillConfig()).__dict__[
            setting.section], setting.name)


def test_a_range_declared_once_holds_for_the_option_and_the_recipe_key():
    from prunecli.errors import RecipeError
    from prunecli.sparsity.recipe import Recipe

    # the recipe's training block and the command line refuse the same value of the same setting
    with pytest.raises(RecipeError, match="distill_alpha"):
        Recipe.from_dict({"training": {"distill_alpha": 1.5}})
    with pytest.raises(UserError, match=r"--distill_alpha must be in \[0, 1\] \(got 1.5\)"):
        check_values(RunConfig(distill=DistillConfig(distill_alpha=1.5)))
    with pytest.raises(UserError, match="--distill_type 'kl' is not one of hidden_mse, logits_kl"):
        check_values(RunConfig(distill=DistillConfig(distill_type="kl")))
    with pytest.raises(UserError, match="--learning_rate must be positive"):
        check_values(RunConfig(train=TrainConfig(learning_rate=-1.0)))
    check_values(RunConfig(prune=PruneConfig(), distill=DistillConfig()))  # the defaults are valid


@pytest.mark.parametrize(("setting", "value", "words"), [
    ("per_device_train_batch_size", 0, "at least 1"), ("adam_beta1", 1.0, "in [0, 1)"),
    ("weight_decay", -0.1, "at least 0"), ("max_sparsity_ratio_per_op", 0.0, "in (0, 1]"),
])
def test_problem_names_the_option_and_the_range(setting, value, words):
    problem = BY_NAME[setting].problem(value)
    assert problem is not None and problem.startswith(f"--{setting} must be {words}")


def test_every_setting_has_help_and_a_default_of_its_type():
    for setting in SETTINGS:
        assert setting.help.strip() and setting.help.rstrip().endswith((".", ")"))
        if setting.default is not None:
            expected = (int, float) if setting.type is float else setting.type
            assert isinstance(setting.default, tuple if setting.type == tuple[str, ...] else expected), setting.name
            assert setting.problem(setting.default) is None, setting.name


def test_the_library_imports_no_run_configuration_cli_training_data_or_rich():
    code = ("import sys, prunecli.sparsity, prunecli.sparsity.recipe, prunecli.sparsity.pruner\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('prunecli.config', 'prunecli.cli', "
            "'prunecli.training', 'prunecli.data', 'prunecli.pipelines', 'rich', 'typer')))\n"
            "import json; print(json.dumps(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                         check=True)
    assert json.loads(out.stdout) == []
