"""Prune with Intel Neural Compressor 2.6, in a loop equivalent to INC's GLUE pruning example.

Runs INSIDE `bench/.venv-inc` (see bench/inc_env.py); it must not import prunecli. It does not
tokenize: `bench/run_glue_bench.py` writes the tokenized train/eval sets (prunecli's own data
layer) to an .npz file, so both tools train on the very same token ids.

What "equivalent to the example" means here (INC's `run_glue_no_trainer.py` of the deprecated
`pruning/eager` example, semantics reproduced, no code copied):

* optimizer: AdamW, betas (0.9, 0.9) when pruning and (0.9, 0.999) otherwise, eps 1e-6 (the default
  of the `transformers.AdamW` the example used; that class no longer exists, `torch.optim.AdamW`
  is the same algorithm). Two parameter groups as in the example: weights that are neither bias,
  LayerNorm nor classifier get `weight_decay`; bias and LayerNorm weights get 0. The classifier
  *weight* is in neither group, so it is never updated (the example's accident, kept on purpose);
* learning-rate schedule from `transformers.get_scheduler` (the reference runs use `constant`);
* pruning: one `snip_momentum` global config excluding the pooler, Linear layers only, at most 98%
  per layer, target / pattern / frequency / pruning_type from the command line (or the local
  configs of `--pruning_configs`), start = int(warm_epochs * N / batch), end = int(N / batch *
  (epochs - cooldown)), frequency -1 = about 40 events; `prepare_pruning(model, config, optimizer)`
  patches `optimizer.step` and registers a forward pre-hook, exactly as the example;
* loss: with `--distill_loss_weight w > 0` the label loss is *replaced* by
  w * MSE(student last hidden state, teacher last hidden state), the teacher being the input model
  in eval mode under no_grad (on the CPU: the example's hard-coded `.cuda()` is dropped);
* evaluation after every epoch (accuracy, and F1 of class 1 for MRPC), the final epoch's numbers
  being the result.

Batches: the example used a shuffled DataLoader with dynamic padding. Here the order of epoch e is
`torch.randperm(N, generator=torch.Generator().manual_seed(seed + e))`, which is exactly the order
prunecli's loop draws with `--no_group_by_length` (accelerate's seedable sampler with data_seed = seed);
prunecli's default groups batches by length instead (see prunecli/sampling.py). `--order_rule
randomsampler` draws from one generator seeded once instead. Padding is to the
longest example of the batch with the tokenizer's pad id (attention mask 0, token type 0).

Outputs in --output_dir: the model (save_pretrained, safetensors), `inc_result.json` (metrics per
epoch, achieved sparsity, wall times, per-step times, versions).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="INC 2.6 pruning, the example's loop, on pre-tokenized data")
    p.add_argument("--data", required=True, help=".npz written by run_glue_bench.py (train_* and eval_* arrays)")
    p.add_argument("--model_name_or_path", required=True, help="dense fine-tuned checkpoint (also the teacher)")
    p.add_argument("--teacher_model_name_or_path", default=None)
    p.add_argument("--task_name", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--per_device_train_batch_size", type=int, default=16)
    p.add_argument("--per_device_eval_batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=5e-5)
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--num_train_epochs", type=int, default=3)
    p.add_argument("--max_train_steps", type=int, default=None)
    p.add_argument("--lr_scheduler_type", default="constant")
    p.add_argument("--num_warmup_steps", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cooldown_epochs", type=float, default=0.0)
    p.add_argument("--sparsity_warm_epochs", type=float, default=0.0)
    p.add_argument("--target_sparsity", type=float, default=None, help="default 0.8 (the example's)")
    p.add_argument("--pruning_pattern", default=None, help="default 4x1 (the example's)")
    p.add_argument("--pruning_frequency", type=int, default=-1)
    p.add_argument("--pruning_type", default=None, help="default snip_momentum")
    p.add_argument("--pruning_configs", default=None,
                   help="JSON file: a list of INC local pruning configs replacing the example's single global one")
    p.add_argument("--recipe", default=None,
                   help="a prunecli recipe (INC 2.x keys: top-level globals + pruning_configs), given to INC as is")
    p.add_argument("--distill_loss_weight", type=float, default=0.0)
    p.add_argument("--no_prune", action="store_true", help="the example without --do_prune (dense baseline)")
    p.add_argument("--order_rule", choices=["per_epoch_seed", "randomsampler"], default="per_epoch_seed")
    p.add_argument("--no_eval_each_epoch", action="store_true", help="evaluate only after the last epoch")
    p.add_argument("--result_json", default=None, help="default: OUTPUT_DIR/inc_result.json")
    return p.parse_args(argv)


# ---- data -----------------------------------------------------------------------------------------------


class Split:
    """A tokenized split stored ragged: concatenated ids plus offsets (no padding, no pickle)."""

    def __init__(self, arrays, prefix: str):
        self.ids = arrays[f"{prefix}_input_ids"]
        self.types = arrays[f"{prefix}_token_type_ids"] if f"{prefix}_token_type_ids" in arrays else None
        self.offsets = arrays[f"{prefix}_offsets"]
        self.labels = arrays[f"{prefix}_labels"]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices, pad_id: int) -> dict:
        import torch

        lengths = [int(self.offsets[i + 1] - self.offsets[i]) for i in indices]
        width = max(lengths)
        input_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(indices), width), dtype=torch.long)
        types = torch.zeros((len(indices), width), dtype=torch.long)
        for row, (i, n) in enumerate(zip(indices, lengths, strict=True)):
            start = int(self.offsets[i])
            input_ids[row, :n] = torch.from_numpy(self.ids[start:start + n].astype("int64"))
            attention[row, :n] = 1
            if self.types is not None:
                types[row, :n] = torch.from_numpy(self.types[start:start + n].astype("int64"))
        out = {"input_ids": input_ids, "attention_mask": attention,
               "labels": torch.as_tensor(self.labels[list(indices)].astype("int64"))}
        if self.types is not None:
            out["token_type_ids"] = types
        return out


def epoch_orders(n: int, seed: int, epochs: int, rule: str):
    """The index order of every epoch (a list per epoch)."""
    import torch

    if rule == "randomsampler":
        g = torch.Generator().manual_seed(seed)
        return [torch.randperm(n, generator=g).tolist() for _ in range(epochs)]
    return [torch.randperm(n, generator=torch.Generator().manual_seed(seed + e)).tolist() for e in range(epochs)]


# ---- metrics (GLUE definitions) -------------------------------------------------------------------------


def glue_metrics(task: str, preds: list[int], refs: list[int]) -> dict[str, float]:
    correct = sum(int(p == r) for p, r in zip(preds, refs, strict=True))
    out = {"accuracy": correct / len(refs)}
    if task in ("mrpc", "qqp"):
        tp = sum(1 for p, r in zip(preds, refs, strict=True) if p == 1 and r == 1)
        fp = sum(1 for p, r in zip(preds, refs, strict=True) if p == 1 and r != 1)
        fn = sum(1 for p, r in zip(preds, refs, strict=True) if p != 1 and r == 1)
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return out


def evaluate(model, split: Split, task: str, batch_size: int, pad_id: int) -> dict[str, float]:
    import torch

    model.eval()
    preds: list[int] = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            batch = split.batch(range(start, min(start + batch_size, len(split))), pad_id)
            batch.pop("labels")
            preds.extend(model(**batch).logits.argmax(dim=-1).tolist())
    return glue_metrics(task, preds, [int(x) for x in split.labels])


# ---- sparsity -------------------------------------------------------------------------------------------


def linear_sparsity(model, pruned_names) -> dict[str, float]:
    """Zeros / elements over all Linear weights (the reference table's element-wise/matmul ratio) and
    over the layers INC pruned."""
    import torch

    total = zeros = p_total = p_zeros = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            z = int((module.weight == 0).sum())
            total += module.weight.numel()
            zeros += z
            if name in pruned_names:
                p_total += module.weight.numel()
                p_zeros += z
    return {
        "elementwise_over_matmul": zeros / total if total else 0.0,
        "pruned_layers_sparsity": p_zeros / p_total if p_total else 0.0,
        "pruned_layers": len(pruned_names),
    }


# ---- the loop -------------------------------------------------------------------------------------------


def optimizer_groups(model, weight_decay: float):
    """The example's two groups; the classifier weight is in neither (so it is never trained)."""
    no_decay = ["bias", "LayerNorm.weight"]
    no_decay_or_classifier = no_decay + ["classifier"]
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if not any(k in n for k in no_decay_or_classifier)],
         "weight_decay": weight_decay},
        {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]


def pruning_window(n_train: int, batch: int, epochs: int, warm: float, cooldown: float, frequency: int):
    """Start / end step and frequency, with the example's arithmetic (float iterations, int truncation)."""
    iterations = n_train / batch
    start = int(warm * iterations)
    end = int(iterations * (epochs - cooldown))
    if frequency == -1:
        frequency = int((end - start + 1) / 40)
    return start, end, frequency


EXAMPLE_LOCAL_CONFIG = {
    "pruning_type": "snip_momentum",
    "pruning_scope": "global",
    "sparsity_decay_type": "exp",
    "excluded_op_names": ["pooler"],
    "pruning_op_types": ["Linear"],
    "max_sparsity_ratio_per_op": 0.98,
}
RECIPE_META_KEYS = ("$schema", "name", "description", "version", "pruning_configs")


def inc_pruning_config(args: argparse.Namespace, start: int, end: int, frequency: int) -> tuple[list[dict], dict]:
    """(local configs, WeightPruningConfig keyword arguments) for this run.

    Without --recipe: the example's single local config (or --pruning_configs) and the example's globals.
    With --recipe: its groups as INC local configs, its top-level keys as globals; start/end/frequency
    from the epoch arithmetic where the recipe does not set them, the pooler excluded unless the recipe
    says otherwise, and explicit command-line pattern/target/type on top (prunecli's merge rule).
    """
    explicit = {k: v for k, v in (("target_sparsity", args.target_sparsity), ("pattern", args.pruning_pattern),
                                  ("pruning_type", args.pruning_type)) if v is not None}
    if args.recipe:
        recipe = json.loads(Path(args.recipe).read_text())
        top = {k: v for k, v in recipe.items() if k not in RECIPE_META_KEYS}
        local_configs = [dict(g) for g in recipe.get("pruning_configs") or [{}]]
        for group in local_configs:
            group.pop("name", None)
        kwargs = {"start_step": start, "end_step": end, "excluded_op_names": ["pooler"], **top, **explicit}
        # An explicit --pruning_frequency wins over the recipe's; -1 (either way) means about 40 events.
        if args.pruning_frequency != -1 or kwargs.get("pruning_frequency", -1) == -1:
            kwargs["pruning_frequency"] = frequency
        return local_configs, kwargs
    if args.pruning_configs:
        local_configs = json.loads(Path(args.pruning_configs).read_text())
    else:
        local_configs = [dict(EXAMPLE_LOCAL_CONFIG)]
    kwargs = {"target_sparsity": 0.8, "pattern": "4x1", "pruning_type": "snip_momentum", **explicit,
              "pruning_frequency": frequency, "start_step": start, "end_step": end}
    return local_configs, kwargs


def main(argv: list[str] | None = None) -> int:
    t_process = time.perf_counter()
    args = parse_args(argv)
    import neural_compressor
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, get_scheduler

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    with np.load(args.data, allow_pickle=False) as arrays:
        data = {k: arrays[k] for k in arrays.files}
    meta = json.loads(str(data.pop("meta")))
    pad_id = int(meta.get("pad_token_id", 0))
    train, dev = Split(data, "train"), Split(data, "eval")

    t_load = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(args.model_name_or_path)
    teacher = None
    if args.distill_loss_weight > 0:
        teacher = AutoModelForSequenceClassification.from_pretrained(
            args.teacher_model_name_or_path or args.model_name_or_path)
        teacher.eval()
    load_s = time.perf_counter() - t_load

    batch = args.per_device_train_batch_size
    steps_per_epoch = math.ceil(len(train) / batch)
    epochs = args.num_train_epochs
    max_steps = args.max_train_steps
    if max_steps is None:
        max_steps = epochs * steps_per_epoch
    else:
        epochs = math.ceil(max_steps / steps_per_epoch)

    betas = (0.9, 0.999) if args.no_prune else (0.9, 0.9)
    optimizer = torch.optim.AdamW(optimizer_groups(model, args.weight_decay), lr=args.learning_rate,
                                  betas=betas, eps=1e-6)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer=optimizer,
                              num_warmup_steps=args.num_warmup_steps, num_training_steps=max_steps)

    start, end, frequency = pruning_window(len(train), batch, epochs, args.sparsity_warm_epochs,
                                           args.cooldown_epochs, args.pruning_frequency)
    pruning = None
    inc_config: dict = {}
    if not args.no_prune:
        from neural_compressor.compression.pruner import prepare_pruning
        from neural_compressor.training import WeightPruningConfig

        local_configs, global_kwargs = inc_pruning_config(args, start, end, frequency)
        # A copy: INC mutates the dicts it is given (it appends "classifier" to excluded_op_names, twice).
        inc_config = copy.deepcopy({"local_configs": local_configs, **global_kwargs})
        config = WeightPruningConfig(local_configs, **global_kwargs)
        pruning = prepare_pruning(model, config, optimizer)

    orders = epoch_orders(len(train), args.seed, epochs, args.order_rule)
    mse = torch.nn.MSELoss()
    step_times: list[float] = []
    losses: list[float] = []
    per_epoch: list[dict] = []
    eval_s = 0.0
    completed = 0
    examples_seen = 0
    t_train = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = orders[epoch]
        for first in range(0, len(order), batch):
            t_step = time.perf_counter()
            inputs = train.batch(order[first:first + batch], pad_id)
            outputs = model(**inputs, output_hidden_states=True)
            loss = outputs.loss
            if teacher is not None:
                with torch.no_grad():
                    teacher_out = teacher(**inputs, output_hidden_states=True)
                loss = args.distill_loss_weight * mse(outputs.hidden_states[-1], teacher_out.hidden_states[-1])
            loss.backward()
            optimizer.step()  # INC's pruning hooks run inside (prepare_pruning patched it)
            scheduler.step()
            optimizer.zero_grad()
            completed += 1
            examples_seen += len(inputs["labels"])
            step_times.append(time.perf_counter() - t_step)
            losses.append(float(loss.detach()))
            if completed >= max_steps:
                break
        if not args.no_eval_each_epoch or epoch == epochs - 1:
            t_eval = time.perf_counter()
            metrics = evaluate(model, dev, args.task_name, args.per_device_eval_batch_size, pad_id)
            eval_s += time.perf_counter() - t_eval
            per_epoch.append({"epoch": epoch, "step": completed, **metrics})
            print(json.dumps({"epoch": epoch, "step": completed, **metrics,
                              "mean_loss": statistics.fmean(losses[-steps_per_epoch:])}), flush=True)
        if completed >= max_steps:
            break
    train_s = time.perf_counter() - t_train

    pruned_names: list[str] = []
    inc_reported = None
    if pruning is not None:
        from neural_compressor.compression.pruner.utils import get_sparsity_ratio

        for pruner in pruning.pruners:
            pruned_names.extend(pruner.modules.keys())
        inc_reported = dict(zip(("elementwise_over_matmul_gemm_conv", "elementwise_over_all",
                                 "blockwise_over_matmul_gemm_conv"),
                                [float(x) for x in get_sparsity_ratio(pruning.pruners, model)], strict=True))
        model.inc_hook_handle.remove()  # a clean module for save_pretrained
    sparsity = linear_sparsity(model, set(pruned_names))

    t_save = time.perf_counter()
    model.save_pretrained(out_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        src = Path(args.model_name_or_path) / name
        if src.exists():
            (out_dir / name).write_bytes(src.read_bytes())
    save_s = time.perf_counter() - t_save

    def phase_median(lo: int, hi: int) -> float | None:
        chunk = step_times[lo:hi]
        return statistics.median(chunk) if chunk else None

    result = {
        "tool": "inc",
        "args": vars(args),
        "argv": sys.argv,
        "data_meta": meta,
        "n_train": len(train),
        "n_eval": len(dev),
        "epochs": epochs,
        "steps": completed,
        "steps_per_epoch": steps_per_epoch,
        "pruning_window": {"start_step": start, "end_step": end, "pruning_frequency": frequency},
        "inc_config": inc_config,
        "metrics": per_epoch[-1] if per_epoch else {},
        "per_epoch": per_epoch,
        "sparsity": sparsity,
        "inc_reported_sparsity": inc_reported,
        "pruned_layer_names": pruned_names,
        "timing": {
            "train_loop_s": train_s,  # includes the per-epoch evaluations
            "eval_s": eval_s,
            "model_load_s": load_s,
            "save_s": save_s,
            "process_s": time.perf_counter() - t_process,
            "step_s_median": statistics.median(step_times) if step_times else None,
            "step_s_median_before_pruning": phase_median(0, start),
            "step_s_median_pruning": phase_median(start, end + 1),
            "step_s_median_after_pruning": phase_median(end + 1, len(step_times)),
            "train_examples_per_s": examples_seen / (train_s - eval_s) if train_s > eval_s else None,
        },
        "final_loss": losses[-1] if losses else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__,
                     "neural_compressor": neural_compressor.__version__},
        "cpu_count": os.cpu_count(),
    }
    result_path = Path(args.result_json) if args.result_json else out_dir / "inc_result.json"
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {result_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
