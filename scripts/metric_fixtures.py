#!/usr/bin/env python3
"""Reference values for beamtune's metric combiners, from scikit-learn and SciPy.

Writes testdata/metrics/reference.json: seeded random predictions for each task kind
and what scikit-learn 1.5 / SciPy 1.13 compute on them. transforms/metrics_reference_test.go
feeds the same predictions to MetricsFn, MultiLabelMetricsFn and RegressionMetricsFn and
compares. Run by scripts/metric_fixtures.sh; the output is committed, so tests need no Python.

Multi-label probabilities sit at the centres of 1/1000-wide bins (k/1000 + 0.0005), so the
combiner's PR-AUC histogram (transforms.PRBins) keeps every distinct score apart and must
equal average_precision_score exactly; ties are still there, on purpose."""
import json, sys
import numpy as np
import scipy, sklearn
from scipy import stats
from sklearn import metrics as M

rng = np.random.default_rng(15)
out = {"generator": f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}, numpy {np.__version__}"}

def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)

def single(n, k):
    truth = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k)); z[np.arange(n), truth] += 1.2  # better than chance, not perfect
    probs = softmax(z).astype(np.float32)
    pred = probs.argmax(1)
    ref = {"accuracy": M.accuracy_score(truth, pred),
           "macro_f1": M.f1_score(truth, pred, average="macro", zero_division=0),
           "micro_f1": M.f1_score(truth, pred, average="micro", zero_division=0),
           "weighted_f1": M.f1_score(truth, pred, average="weighted", zero_division=0),
           "mcc": M.matthews_corrcoef(truth, pred),
           "log_loss": M.log_loss(truth, probs.astype(np.float64), labels=list(range(k))),
           "precision": M.precision_score(truth, pred, average=None, zero_division=0).tolist(),
           "recall": M.recall_score(truth, pred, average=None, zero_division=0).tolist()}
    if k == 2:
        ref["positive_f1"] = M.f1_score(truth, pred, pos_label=1)
    return {"labels": [f"c{i}" for i in range(k)], "truth": truth.tolist(), "probs": probs.tolist(),
            "expected": {k2: float(v) if not isinstance(v, list) else v for k2, v in ref.items()}}

def multilabel(n, k):
    truth = rng.random((n, k)) < np.linspace(0.1, 0.45, k)
    truth[rng.random(n) < 0.05] = False  # some rows with no label at all
    score = rng.normal(0, 1, (n, k)) + 1.3 * truth
    probs = 1 / (1 + np.exp(-score))
    probs = np.minimum(np.floor(probs * 1000), 999) / 1000 + 0.0005  # bin centres
    probs = probs.astype(np.float32).astype(np.float64)
    thresholds = np.round(np.linspace(0.3, 0.6, k), 2)
    pred = probs > thresholds
    ref = {"macro_f1": M.f1_score(truth, pred, average="macro", zero_division=0),
           "micro_f1": M.f1_score(truth, pred, average="micro", zero_division=0),
           "weighted_f1": M.f1_score(truth, pred, average="weighted", zero_division=0),
           "samples_f1": M.f1_score(truth, pred, average="samples", zero_division=0),
           "subset_accuracy": M.accuracy_score(truth, pred),
           "hamming_loss": M.hamming_loss(truth, pred),
           "precision": M.precision_score(truth, pred, average=None, zero_division=0).tolist(),
           "recall": M.recall_score(truth, pred, average=None, zero_division=0).tolist(),
           "f1": M.f1_score(truth, pred, average=None, zero_division=0).tolist(),
           "average_precision": [M.average_precision_score(truth[:, j], probs[:, j]) for j in range(k)],
           "label_cardinality": float(truth.sum(1).mean()), "predicted_cardinality": float(pred.sum(1).mean())}
    return {"labels": [f"l{i}" for i in range(k)], "truth": [np.flatnonzero(r).tolist() for r in truth],
            "probs": probs.tolist(), "thresholds": thresholds.tolist(),
            "expected": {k2: float(v) if not isinstance(v, list) else [float(x) for x in v] for k2, v in ref.items()}}

def regression(n):
    truth = np.round(rng.uniform(0, 5, n) / 0.2) * 0.2  # 0.2 steps: ties for Spearman
    pred = truth + rng.normal(0, 0.8, n)
    pred[:10] = np.round(pred[:10])  # ties among predictions too
    truth, pred = truth.astype(np.float32), pred.astype(np.float32)
    t, p = truth.astype(np.float64), pred.astype(np.float64)
    return {"truth": truth.tolist(), "pred": pred.tolist(),
            "expected": {"pearson": float(stats.pearsonr(p, t)[0]), "spearman": float(stats.spearmanr(p, t)[0]),
                         "mse": float(M.mean_squared_error(t, p)), "mae": float(M.mean_absolute_error(t, p)),
                         "mean_residual": float((p - t).mean())}}

out["binary"] = single(240, 2)
out["multiclass"] = single(300, 4)
out["multilabel"] = multilabel(260, 5)
out["regression"] = regression(220)
json.dump(out, sys.stdout)
sys.stdout.write("\n")
