"""GLUE metric definitions, computed offline with scikit-learn and scipy.

The names are those of the `glue` metric of Hugging Face `evaluate` (and of every published GLUE
dev result), so numbers here can be compared with numbers reported elsewhere:

| task | metrics |
|---|---|
| cola | `matthews_correlation` |
| mrpc, qqp | `accuracy`, `f1` (F1 of the positive class, id 1) |
| stsb (and any regression) | `pearson`, `spearmanr` |
| everything else (sst2, mnli, qnli, rte, wnli, rotten_tomatoes, own data) | `accuracy` |

MNLI's matched and mismatched scores come from evaluating its two validation splits; the training
loop names the mismatched ones with an `_mm` suffix (`accuracy_mm`), as `run_glue.py` does.

`evaluate.load("glue", ...)` is not used because it fetches its metric script from the hub.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

F1_TASKS = frozenset({"mrpc", "qqp"})


def compute_metrics(
    task_name: str | None,
    predictions: Sequence | np.ndarray,
    references: Sequence | np.ndarray,
    is_regression: bool,
) -> dict[str, float]:
    """Score `predictions` against `references` with the GLUE definition for `task_name`.

    Classification predictions and references are label ids; regression ones are floats.
    A correlation that is undefined (constant predictions) is NaN, not an exception: a model
    early in training legitimately predicts one value.
    """
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if preds.shape != refs.shape:
        raise ValueError(f"predictions {preds.shape} and references {refs.shape} differ in shape")
    if preds.size == 0:
        raise ValueError("no predictions to score")
    if is_regression or task_name == "stsb":
        from scipy.stats import pearsonr, spearmanr

        preds, refs = preds.astype(np.float64), refs.astype(np.float64)
        with warnings.catch_warnings():
            # scipy warns (ConstantInputWarning) and returns NaN when an input is constant; NaN is the answer.
            warnings.simplefilter("ignore")
            pearson = float(pearsonr(preds, refs)[0]) if preds.size > 1 else math.nan
            spearman = float(spearmanr(preds, refs)[0]) if preds.size > 1 else math.nan
        return {"pearson": pearson, "spearmanr": spearman}
    if task_name == "cola":
        from sklearn.metrics import matthews_corrcoef

        return {"matthews_correlation": float(matthews_corrcoef(refs, preds))}
    accuracy = float((preds == refs).mean())
    if task_name in F1_TASKS:
        from sklearn.metrics import f1_score

        return {"accuracy": accuracy, "f1": float(f1_score(refs, preds, pos_label=1, zero_division=0.0))}
    return {"accuracy": accuracy}
