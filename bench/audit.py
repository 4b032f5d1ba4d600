"""Benchmark: the fairness audit's bootstrap vs fairlearn MetricFrame's own bootstrap, on the same rows.

Data: --rows synthetic applications (usecases/german_credit/generator.py, bias 0.3 against women), scored by a
logistic regression fitted on the first 20,000 rows (untimed: the bench measures the audit, not training),
approve at P(good) >= 0.5. Metrics: selection rate, TPR and FPR by sex, 95% percentile CIs.
  ours       tasks.audit.fairness.audit with --resamples (1,000) resamples: MetricFrame point values for all 8 of
             its metrics, plus the multinomial bootstrap over the confusion cells (tasks.audit.bootstrap)
  fairlearn  MetricFrame(n_boot=K, ci_quantiles=[0.025, 0.975], random_state=0) with the 3 metrics, and the
             same MetricFrame without n_boot, so that its time per resample excludes the point computation
Point values must be equal. CIs are judged against what K resamples can say: K draws are taken from our
bootstrap distribution 20,000 times and fairlearn's endpoint must lie inside the central 99.9% of the endpoints
those give (12 endpoints: about a 1% chance of a false alarm in all). The largest absolute gap between the
two CIs' endpoints is printed beside our CIs' half-width.
Usage: .venv/bin/python bench/audit.py [--rows 1000000] [--fairlearn-resamples 10] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

from steward.params import parse_params
from tasks.audit.bootstrap import attribute_rng, bootstrap_groups
from tasks.audit.fairness import audit
from tasks.data.features import LABEL, to_feature_frame
from tasks.model.train import fit
from usecases.german_credit.generator import generate_applications

PROJECT = Path(__file__).resolve().parents[1]
THRESHOLD, LEVEL, QUANTILES = 0.5, 0.95, [0.025, 0.975]
METRICS = {"selection_rate": "selection_rate", "tpr": "true_positive_rate", "fpr": "false_positive_rate"}
GOAL = 50.0


def scored(rows: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    params = parse_params({"usecase": "german_credit", "train": {"model": "logistic_regression"}}, project_dir=PROJECT)
    frame = to_feature_frame(generate_applications(rows, seed=0, bias=0.3), usecase=params.usecase)
    model = fit(frame.iloc[:20_000], params=params)
    proba = model.predict_proba(frame[list(model.feature_names_in_)])[:, 1]
    return frame[LABEL].to_numpy(), proba, frame[["sex"]]


def fairlearn_frame(y: np.ndarray, decision: np.ndarray, sex: pd.Series, **bootstrap: object) -> MetricFrame:
    metrics = {
        "selection_rate": lambda t, p: selection_rate(t, p, pos_label=1),
        "true_positive_rate": lambda t, p: true_positive_rate(t, p, pos_label=1),
        "false_positive_rate": lambda t, p: false_positive_rate(t, p, pos_label=1),
    }
    return MetricFrame(metrics=metrics, y_true=y, y_pred=decision, sensitive_features=sex, **bootstrap)


def band(draws: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Central 99.9% range of each CI endpoint that a k-resample bootstrap would report: shape (2, 2)."""
    subsets = rng.choice(draws[np.isfinite(draws)], size=(20_000, k), replace=True)
    endpoints = np.quantile(subsets, QUANTILES, axis=1)  # (2, 20000)
    return np.quantile(endpoints, [0.0005, 0.9995], axis=1).T  # row per endpoint: [lo, hi]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--fairlearn-resamples", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    k, n_boot = args.fairlearn_resamples, args.resamples

    print(f"generating and scoring {args.rows:,} rows (untimed) ...", flush=True)
    y, proba, sensitive = scored(args.rows)
    decision = (proba >= THRESHOLD).astype(int)

    print(f"ours: audit with {n_boot} resamples ...", flush=True)
    start = time.perf_counter()
    report = audit(y, proba, sensitive, threshold=THRESHOLD, n_boot=n_boot, ci_level=LEVEL, min_group_size=30,
                   seed=0, attributes=["sex"], intersections=[])  # fmt: skip
    ours_wall = time.perf_counter() - start
    start = time.perf_counter()  # the engine alone, same seed stream as the audit: the same draws
    boot = bootstrap_groups(sensitive["sex"].to_numpy(), y, decision=decision, proba=proba, n_boot=n_boot,
                            min_group_size=30, rng=attribute_rng(0, "sex"))  # fmt: skip
    engine_wall = time.perf_counter() - start

    print(f"fairlearn: MetricFrame point, then with n_boot={k} ...", flush=True)
    start = time.perf_counter()
    fairlearn_frame(y, decision, sensitive["sex"])
    fl_point = time.perf_counter() - start
    start = time.perf_counter()
    frame = fairlearn_frame(y, decision, sensitive["sex"], n_boot=k, ci_quantiles=QUANTILES, random_state=0)
    fl_wall = time.perf_counter() - start

    rng = np.random.default_rng(1)
    groups = report["attributes"]["sex"]["groups"]
    header = (
        f"{'metric':<15}{'group':<8}{'point ours':>12}{'fairlearn':>12}   {'CI ours':<20}{f'CI fairlearn K={k}':<20}"
    )
    print(f"\n{args.rows:,} rows, approve at P(good) >= {THRESHOLD}, {LEVEL:.0%} percentile CIs by sex\n{header}")
    all_equal, all_agree, gap, half_width = True, True, 0.0, 0.0
    for ours_name, fl_name in METRICS.items():
        for g, group in enumerate(boot.groups):
            ours, theirs = groups[group][ours_name], float(frame.by_group.loc[group, fl_name])
            equal = bool(np.isclose(ours["value"], theirs, rtol=1e-12, atol=0))
            low, high = (float(frame.by_group_ci[i].loc[group, fl_name]) for i in range(2))
            ranges = band(boot.draws[ours_name][:, g], k, rng)
            agree = bool(ranges[0, 0] <= low <= ranges[0, 1] and ranges[1, 0] <= high <= ranges[1, 1])
            all_equal, all_agree = all_equal and equal, all_agree and agree
            gap = max(gap, abs(low - ours["ci"][0]), abs(high - ours["ci"][1]))
            half_width = max(half_width, (ours["ci"][1] - ours["ci"][0]) / 2)
            ci = "[{:.4f}, {:.4f}]".format(*ours["ci"])
            print(
                f"{ours_name:<15}{group:<8}{ours['value']:>12.6f}{theirs:>12.6f}   {ci:<20}[{low:.4f}, {high:.4f}]"
                f"      {'equal' if equal else 'NOT EQUAL'}; {'agree' if agree else 'DISAGREE'}"
                f" (99.9% band of K-draw endpoints: [{ranges[0, 0]:.4f}, {ranges[0, 1]:.4f}] /"
                f" [{ranges[1, 0]:.4f}, {ranges[1, 1]:.4f}])"
            )
    ours_per, engine_per, fl_per = ours_wall / n_boot, engine_wall / n_boot, (fl_wall - fl_point) / k
    print(
        f"\npoint figures equal: {'yes' if all_equal else 'NO'}; CIs agree within bootstrap noise: "
        f"{'yes' if all_agree else 'NO'} (largest |endpoint gap| {gap:.4f}; our widest CI half-width"
        f" {half_width:.4f})\n"
        f"wall time  ours: {ours_wall:.1f} s for {n_boot} resamples (whole audit: MetricFrame points for 8 metrics"
        f" + bootstrap; the bootstrap engine alone {engine_wall:.2f} s)\n"
        f"           fairlearn: {fl_wall:.1f} s for {k} resamples"
        f" (of which {fl_point:.1f} s is the point MetricFrame, timed separately)\n"
        f"per resample  ours: {ours_per * 1e3:.1f} ms whole audit / {engine_per * 1e3:.2f} ms engine alone;"
        f" fairlearn: {fl_per:.2f} s\n"
        f"speed-up per resample: {fl_per / ours_per:,.0f}x counting our whole audit, {fl_per / engine_per:,.0f}x"
        f" engine vs fairlearn's bootstrap (goal >= {GOAL:.0f}x: {'met' if fl_per / ours_per >= GOAL else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
