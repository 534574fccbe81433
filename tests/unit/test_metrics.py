"""GLUE metrics against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest

from prunecli.data.glue import metric_suffix
from prunecli.data.metrics import compute_metrics

PREDS = [1, 0, 1, 1, 0, 1]
REFS = [1, 0, 0, 1, 1, 1]
# matches at 0, 1, 3, 5 -> accuracy 4/6; TP=3 (0, 3, 5), TN=1 (1), FP=1 (2), FN=1 (4)


def test_accuracy_for_single_metric_tasks():
    for task in ("sst2", "qnli", "rte", "wnli", "mnli", "rotten_tomatoes", None):
        assert compute_metrics(task, PREDS, REFS, False) == pytest.approx({"accuracy": 4 / 6})


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_and_accuracy_for_paraphrase_tasks(task):
    # precision = 3/4, recall = 3/4 -> F1 = 0.75
    assert compute_metrics(task, PREDS, REFS, False) == pytest.approx({"accuracy": 4 / 6, "f1": 0.75})


def test_matthews_correlation_for_cola():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (3 - 1) / sqrt(4*4*2*2) = 0.25
    assert compute_metrics("cola", PREDS, REFS, False) == pytest.approx({"matthews_correlation": 0.25})


def test_pearson_and_spearman_for_stsb():
    # deviations (-1.5,-.5,.5,1.5) and (-3.25,-1.25,.75,3.75): 11.5 / sqrt(5 * 26.75) = 0.994379...
    result = compute_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0], True)
    assert result["pearson"] == pytest.approx(11.5 / math.sqrt(5 * 26.75))
    assert result["spearmanr"] == pytest.approx(1.0)
    # rank differences (0, 1, -1, 0): 1 - 6 * 2 / (4 * 15) = 0.8
    assert compute_metrics("stsb", [1, 3, 2, 4], [1, 2, 3, 4], True)["spearmanr"] == pytest.approx(0.8)


def test_regression_on_own_data_uses_correlations():
    assert set(compute_metrics(None, [0.1, 0.5, 0.2], [0.0, 1.0, 0.3], True)) == {"pearson", "spearmanr"}


def test_constant_predictions_give_nan_not_an_error():
    assert math.isnan(compute_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0], True)["pearson"])
    assert compute_metrics("cola", [1, 1, 1], [0, 1, 1], False) == {"matthews_correlation": 0.0}


def test_shape_mismatch_is_a_bug():
    with pytest.raises(ValueError):
        compute_metrics("sst2", [1, 0], [1], False)


def test_mnli_mismatched_split_names():
    assert metric_suffix("validation_matched") == ""
    assert metric_suffix("validation") == ""
    assert metric_suffix("validation_mismatched") == "_mm"
