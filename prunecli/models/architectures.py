"""Compacted models as transformers architectures: per-layer head and neuron counts, loadable by `from_pretrained`.

A compacted checkpoint whose shapes fit the stock config (the same neuron count in every layer, every
head kept) is saved as the stock architecture with a smaller `intermediate_size`. Otherwise its
`config.json` has `model_type` `prunecli-<base>` (e.g. `prunecli-bert`) and `compact_layers`, one
`{"num_attention_heads", "intermediate_size"}` per layer. `import prunecli` makes transformers' Auto
classes know these types, so the ordinary call works, with no remote code and no pickles::

    import prunecli
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained("compact_model")

Registering needs transformers' configuration and modelling code, which takes seconds to import, so
`import prunecli` only installs an import hook (`install_registration_hook`): the config types are
registered the moment transformers' Auto modules load (or at once when they already have), and a base's
model classes when a compact config of that base is first read.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from typing import Any

#: Base architectures prunecli can compact: model_type -> (config, base model, sequence classifier, question
#: answering, token classifier) class names; each prefix in `BASE_NAMES`, each head's ending in `HEADS`.
BASE_NAMES = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "camembert": "Camembert",
              "electra": "Electra", "distilbert": "DistilBert"}
#: The task heads, by the index of their class in a BASES entry, with the Auto class that loads them.
HEADS = {2: ("ForSequenceClassification", "AutoModelForSequenceClassification"),
         3: ("ForQuestionAnswering", "AutoModelForQuestionAnswering"),
         4: ("ForTokenClassification", "AutoModelForTokenClassification")}
BASES = {base: (f"{name}Config", f"{name}Model", *(name + ending for ending, _ in HEADS.values()))
         for base, name in BASE_NAMES.items()}
PREFIX = "prunecli-"
_CONFIG_MODULE = "transformers.models.auto.configuration_auto"
_registered: dict[str, Any] = {}


def compact_model_type(base: str) -> str:
    return PREFIX + base


def config_class(base: str):
    """The compact config class of a base model type (created and registered with AutoConfig once).

    Its `from_dict` (what `AutoConfig.from_pretrained` calls) registers the model classes too: they need
    transformers' modelling code, which is imported only when a compact checkpoint is actually loaded.
    """
    key = ("config", base)
    if key not in _registered:
        from huggingface_hub.dataclasses import strict
        from transformers.models.auto.configuration_auto import AutoConfig

        module = base.replace("-", "_")
        parent = getattr(importlib.import_module(f"transformers.models.{module}.configuration_{module}"),
                         BASES[base][0])

        def from_dict(cls, config_dict, **kwargs):
            register_models(base)
            return super(cls, cls).from_dict.__func__(cls, config_dict, **kwargs)

        namespace = {"model_type": compact_model_type(base), "__annotations__": {"compact_layers": list | None},
                     "compact_layers": None, "__module__": __name__, "from_dict": classmethod(from_dict),
                     "__doc__": f"{parent.__name__} with per-layer heads and neurons (`compact_layers`)."}
        cls = strict(type(f"Compact{parent.__name__}", (parent,), namespace))
        AutoConfig.register(compact_model_type(base), cls, exist_ok=True)
        _registered[key] = cls
    return _registered[key]


def _model_class(base: str, which: int):
    key = ("model", base, which)
    if key not in _registered:
        from prunecli.sparsity.compact import apply_layer_sizes

        module = base.replace("-", "_")
        parent = getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"),
                         BASES[base][which])

        def __init__(self, config, *args, **kwargs):
            parent.__init__(self, config, *args, **kwargs)
            if getattr(config, "compact_layers", None):
                apply_layer_sizes(self, config.compact_layers)

        cls = type(f"Compact{parent.__name__}", (parent,), {
            "config_class": config_class(base), "__init__": __init__, "__module__": __name__,
            "__doc__": f"{parent.__name__} whose layers have the heads and neurons its config lists."})
        _registered[key] = cls
    return _registered[key]


def register_configs() -> None:
    """Register the compact config types with AutoConfig (cheap once transformers' Auto modules are loaded)."""
    for base in BASES:
        config_class(base)


def register_models(base: str) -> None:
    """Register a base's compact classes with AutoModel and the Auto classes of every task head (HEADS)."""
    if ("models", base) in _registered:
        return
    from transformers.models.auto import modeling_auto

    cfg = config_class(base)
    modeling_auto.AutoModel.register(cfg, _model_class(base, 1), exist_ok=True)
    for which, (_, auto) in HEADS.items():
        getattr(modeling_auto, auto).register(cfg, _model_class(base, which), exist_ok=True)
    _registered[("models", base)] = True


class _WhenTransformersSettles(importlib.abc.MetaPathFinder):
    """Registers the compact config types once transformers' Auto config module is loaded and no transformers
    module is still being imported (registering in the middle of transformers' own import chain would import
    half-initialised modules). It watches transformers' modules as they execute, then removes itself."""

    def __init__(self):
        self.depth = 0

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith("transformers."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _WatchedLoader(spec.loader, self)
                return spec
        return None

    def settle(self) -> None:
        if self.depth == 0 and _CONFIG_MODULE in sys.modules and self in sys.meta_path:
            sys.meta_path.remove(self)
            register_configs()


class _WatchedLoader(importlib.abc.Loader):
    def __init__(self, loader, watcher: _WhenTransformersSettles):
        self.loader, self.watcher = loader, watcher

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.watcher.depth += 1
        try:
            self.loader.exec_module(module)
        finally:
            self.watcher.depth -= 1
        self.watcher.settle()


def install_registration_hook() -> None:
    """Register the compact config types once transformers' Auto modules are loaded (now, if they are)."""
    if any(isinstance(f, _WhenTransformersSettles) for f in sys.meta_path):
        return
    if _CONFIG_MODULE in sys.modules and not any(
            getattr(getattr(m, "__spec__", None), "_initializing", False)
            for name, m in list(sys.modules.items()) if name.startswith("transformers")):
        register_configs()
        return
    sys.meta_path.insert(0, _WhenTransformersSettles())


def base_model_type(config) -> str:
    """The base architecture of a config (`prunecli-bert` -> `bert`); a StructureError (exit 2) if compacted
    checkpoints of it cannot be saved and loaded."""
    from prunecli.structure import StructureError

    model_type = getattr(config, "model_type", "")
    base = model_type[len(PREFIX):] if model_type.startswith(PREFIX) else model_type
    if base not in BASES:
        raise StructureError(f"model type {model_type!r}: compacted checkpoints are supported for "
                             f"{', '.join(BASES)}", hint="prune it with element patterns, or open an issue with "
                             "its architecture.")
    return base


_SIZE_FIELDS = {"distilbert": ("n_heads", "hidden_dim")}  # others: num_attention_heads, intermediate_size


def compact_config(config, sizes: list[dict[str, int]]):
    """The config of a compacted model: the stock one with a smaller `intermediate_size` when every layer has
    the same neurons and all its heads, else the `prunecli-<base>` config with `compact_layers`."""
    base = base_model_type(config)
    heads_field, size_field = _SIZE_FIELDS.get(base, ("num_attention_heads", "intermediate_size"))
    values = config.to_dict()
    for key in ("model_type", "compact_layers", "transformers_version", "architectures"):
        values.pop(key, None)
    all_heads = all(s["num_attention_heads"] == values[heads_field] for s in sizes)
    neurons = {s["intermediate_size"] for s in sizes}
    if all_heads and len(neurons) == 1:
        values[size_field] = neurons.pop()
        stock = type(config) if not config.model_type.startswith(PREFIX) else type(config).__mro__[1]
        new = stock(**values)
    else:
        new = config_class(base)(**values, compact_layers=[dict(s) for s in sizes])
        register_models(base)
    new.architectures = [_architecture_name(base, compact=not (all_heads and len(neurons) == 1),
                                            head=_head_index(config))]
    return new


def _head_index(config) -> int:
    """The BASES index of the task head a config's architecture names (the sequence classifier by default)."""
    for name in getattr(config, "architectures", None) or ():
        for which, (ending, _) in HEADS.items():
            if str(name).endswith(ending):
                return which
    return 2


def compact_model(model, plan=None):
    """Remove the pruned heads and neurons of a transformers sequence classifier, question-answering model or
    token classifier in place, and give it the config that records its new shapes, so that
    `model.save_pretrained(folder)` writes a checkpoint that its Auto class (`AutoModelForSequenceClassification`,
    `AutoModelForQuestionAnswering`, `AutoModelForTokenClassification`) loads (after `import prunecli` when the
    layers differ). Returns the `CompactionPlan` (units kept per block, `heads_removed`, `neurons_removed`).
    The function is unchanged up to float rounding; check the logits on your own inputs if you like."""
    from prunecli.sparsity.compact import compact_, layer_sizes, plan_compaction

    base_model_type(model.config)  # an architecture it could not save is refused before anything changes
    plan = plan or plan_compaction(model)
    compact_(model, plan)
    old = model.config
    new = compact_config(old, layer_sizes(model))
    name = type(model).__name__.removeprefix("Compact")  # the model's own head names the architecture
    new.architectures = [f"Compact{name}" if new.model_type.startswith(PREFIX) else name]
    new._attn_implementation = old._attn_implementation
    for module in model.modules():  # the base model and the layers hold the same config object
        if getattr(module, "config", None) is old:
            module.config = new
    return plan


def _architecture_name(base: str, *, compact: bool, head: int = 2) -> str:
    name = BASES[base][head]
    return f"Compact{name}" if compact else name
