"""Monitoring a served model: a report over a window of the prediction log against the model's reference
(tasks/model/reference.py, computed once at training and stored with the model).

The report, per window: input drift per column, prediction drift, each group's approval rate against its
reference (a breach when the difference passes `selection_gap` with at least `min_group_size` decisions),
each group's error rate once outcomes have arrived (`error_gap`; an approval is an error unless the outcome
is the use case's favourable value, compared as the string /feedback stores), attribution drift (the Jensen-Shannon
distance between the two attribution-share vectors), the share of requests the model raised on
(`max_error_rate`), and the window's p95 latency against `max_p95_latency_ms`. What reviewers decided on
the model's referred and contested decisions is reported per group (how many they approved, declined or
overturned). Every breach is named in `breaches`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from scipy.spatial.distance import jensenshannon

from steward.db import make_engine
from steward.layout import Layout
from steward.ledger import Ledger
from steward.model_integrity import ModelRefused
from steward.params import load_params
from steward.predictions import ERROR
from steward.registry import Registry
from steward.settings import Settings
from steward.windows import served_window
from tasks.model.integrity import verified
from tasks.model.reference import PROBABILITY
from tasks.model.register import stored_reference
from tasks.monitor.drift import ColumnDrift, Thresholds, column_drift, drift, drift_of_counts, verdict
from tasks.monitor.stream import (
    LATENCY,
    Engine,
    columns_of,
    dask_counts,
    dask_tally,
    read_column,
    storage_options,
    stream_counts,
    stream_tally,
)
from tasks.monitor.tally import Tally, WindowTally, tally

NO_OUTCOMES = "no outcomes yet"
FEW = "{n} decision(s), fewer than {minimum}"
NO_REFERENCE = "model {ref} was stored without a monitoring reference (registered before the reference stage)"
REFUSED = "model refused, not monitored: {reason}"
SHAP_SAMPLE = 200  # rows of the window explained for attribution drift


@dataclass(frozen=True)
class Limits:
    """What counts as a breach (params.yaml `monitor`)."""

    drift: Thresholds = field(default_factory=Thresholds)
    prediction_psi: float = 0.2
    selection_gap: float = 0.1
    error_gap: float = 0.1
    attribution_js: float = 0.1
    max_p95_latency_ms: float = 250.0
    max_error_rate: float = 0.01
    min_group_size: int = 50


def report(
    window: pd.DataFrame,
    ref: Mapping[str, Any],
    *,
    limits: Limits,
    favourable: str,
    attributions: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The monitoring report of `window` (one row per served decision: the inputs, probability, decision,
    outcome or None, latency_ms, and the sensitive attributes) against `ref`; an outcome equal to
    `favourable` (the use case's favourable label value, as a string) is the one an approval is right on."""
    return judge(
        inputs=drift(window, ref["inputs"], thresholds=limits.drift),
        prediction=column_drift(
            ref["prediction"], window[PROBABILITY], column=PROBABILITY, thresholds=Thresholds(psi=limits.prediction_psi)
        ),
        tallied=tally(window, ref["groups"], favourable=favourable),
        ref=ref,
        limits=limits,
        attributions=attributions,
        latencies=window["latency_ms"].to_numpy(dtype=float),
    )


def judge(
    *,
    inputs: list[ColumnDrift],
    prediction: ColumnDrift,
    tallied: WindowTally,
    ref: Mapping[str, Any],
    limits: Limits,
    attributions: Mapping[str, float] | None = None,
    latencies: np.ndarray | None = None,
) -> dict[str, Any]:
    """The report from a window's drift, tallies, attributions and latencies (None: not read, not judged)."""
    breaches = [f"input drift: {d.column} {_stats(d.statistics)}" for d in inputs if d.drifted]
    if prediction.statistics["psi"] > limits.prediction_psi:
        breaches.append(f"prediction drift: PSI {prediction.statistics['psi']:.3f} > {limits.prediction_psi}")
    error_rate = tallied.errors / tallied.requests if tallied.requests else 0.0
    if error_rate > limits.max_error_rate:
        breaches.append(
            f"errors: {tallied.errors} of {tallied.requests} requests ({error_rate:.2%}) > {limits.max_error_rate:.2%}"
        )
    groups = []
    for name, expected in ref["groups"].items():
        if name not in tallied.groups:
            continue
        row = _group(name, expected, tallied.groups[name], limits)
        breaches += row.pop("breaches")
        groups.append(row)
    attribution = None
    if attributions is not None:
        total = sum(abs(v) for v in attributions.values()) or 1.0
        keys = sorted(set(ref["attributions"]) | set(attributions))
        distance = float(
            jensenshannon(
                [ref["attributions"].get(k, 0.0) for k in keys],
                [abs(attributions.get(k, 0.0)) / total for k in keys],
                base=2,
            )
        )
        attribution = {"js": distance, "drifted": distance > limits.attribution_js}
        if attribution["drifted"]:
            breaches.append(f"attribution drift: JS {distance:.3f} > {limits.attribution_js}")
    latency = None
    if latencies is not None:
        p95 = float(np.percentile(latencies, 95)) if len(latencies) else None
        if p95 is not None and p95 > limits.max_p95_latency_ms:
            breaches.append(f"latency: p95 {p95:.0f} ms > {limits.max_p95_latency_ms:.0f} ms")
        latency = {"p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None, "p95_ms": p95}
    return {
        "n": tallied.requests,
        "errors": tallied.errors,
        "error_rate": error_rate,
        "outcomes": tallied.answered.with_outcome,
        "reviews": tallied.answered.review_counts(),
        "inputs": [asdict(d) for d in inputs],
        "prediction": asdict(prediction),
        "groups": groups,
        "attribution": attribution,
        "latency": latency,
        "breaches": breaches,
    }


def _group(name: str, expected: Mapping[str, float], counted: Tally, limits: Limits) -> dict[str, Any]:
    row: dict[str, Any] = {"group": name, "n": counted.n, "reference": dict(expected), "breaches": []}
    row["reviews"] = counted.review_counts()
    if counted.n < limits.min_group_size:
        row["note"] = FEW.format(n=counted.n, minimum=limits.min_group_size)
        return row
    rate = counted.approved / counted.n
    row["selection_rate"] = rate
    if abs(rate - expected["selection_rate"]) > limits.selection_gap:
        row["breaches"].append(
            f"selection rate drift: {name} {rate:.3f} vs {expected['selection_rate']:.3f} at training"
        )
    row["with_outcome"] = counted.with_outcome
    if counted.with_outcome >= limits.min_group_size:
        error = counted.wrong / counted.with_outcome
        row["error_rate"] = error
        if abs(error - expected["error_rate"]) > limits.error_gap:
            row["breaches"].append(f"error rate drift: {name} {error:.3f} vs {expected['error_rate']:.3f} at training")
    elif counted.with_outcome:
        row["outcome_note"] = FEW.format(n=counted.with_outcome, minimum=limits.min_group_size)
    else:
        row["outcome_note"] = NO_OUTCOMES
    return row


def _stats(statistics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in statistics.items())


def limits_of(monitor: Any) -> Limits:
    """Limits from params.yaml's `monitor` section."""
    return Limits(
        drift=Thresholds(psi=monitor.psi, ks=monitor.ks, js=monitor.js),
        prediction_psi=monitor.prediction_psi,
        selection_gap=monitor.selection_gap,
        error_gap=monitor.error_gap,
        attribution_js=monitor.attribution_js,
        max_p95_latency_ms=monitor.max_p95_latency_ms,
        max_error_rate=monitor.max_error_rate,
        min_group_size=monitor.min_group_size,
    )


def mean_attributions(model: Any, rows: pd.DataFrame, *, background: pd.DataFrame | None) -> dict[str, float]:
    """Each column's mean absolute SHAP attribution over `rows` (summed back from the encoded columns)."""
    from tasks.serving.attribution import aggregate, build_explainer, encoded_sources, explain_rows

    explainer = build_explainer(model, background=background if background is not None else rows)
    attribution = explain_rows(model, rows, explainer=explainer)
    summed = aggregate(attribution.values, encoded_sources(model[0]))
    return {str(k): float(v) for k, v in summed.abs().mean().items()}


def page(found: Mapping[str, Any], *, title: str) -> str:
    """The report as one offline HTML page: the breaches, then plots of input drift and group rates."""
    import base64
    import html
    import io

    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    columns = [d["column"] for d in found["inputs"]]
    scores = [
        max(d["statistics"].get("psi", 0.0), d["statistics"].get("ks", 0.0), d["statistics"].get("js", 0.0))
        for d in found["inputs"]
    ]
    left.barh(columns, scores, color=["#c0392b" if d["drifted"] else "#7f8c8d" for d in found["inputs"]])
    left.set_title("input drift (largest statistic; red: drifted)")
    groups = [g for g in found["groups"] if "selection_rate" in g]
    names = [g["group"] for g in groups]
    positions = np.arange(len(names))
    right.barh(positions - 0.2, [g["reference"]["selection_rate"] for g in groups], height=0.4, label="training")
    right.barh(positions + 0.2, [g["selection_rate"] for g in groups], height=0.4, label="window")
    right.set_yticks(positions, names)
    right.set_title("approval rate by group")
    right.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    breaches = "".join(f"<li>{html.escape(b)}</li>" for b in found["breaches"]) or "<li>none</li>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{found['n']} decisions, {found['outcomes']} with outcomes; "
        f"p95 latency {(found['latency'] or {}).get('p95_ms') or 0:.0f} ms</p><h2>Breaches</h2><ul>{breaches}</ul>"
        f"<img alt='input drift and approval rates by group' src='data:image/png;base64,{image}'></body></html>"
    )


def _reference(ref: str, *, settings: Settings, where: str) -> tuple[Any, dict[str, Any]]:
    """The verified model `ref` and the reference stored with it; ModelRefused when its bytes or records do not
    verify (it is then never unpickled, its reference included)."""
    engine = make_engine(settings.db_url)
    version = verified(ref, registry=Registry(engine), ledger=Ledger(engine), settings=settings, where=where)
    reference = stored_reference(version.model_tag)
    if reference is None:
        raise ValueError(NO_REFERENCE.format(ref=ref))
    return version, reference


@task(name="monitor-window", cache_policy=NO_CACHE)
def monitor_window(
    ref: str, *, since: str, until: str, usecase: str | None = None, settings: Settings
) -> dict[str, Any]:
    """The report of one window (see `report`) of `ref`, a model of `usecase` (default: params.yaml's), with
    the model's attributions on a sample of it. A model whose bytes or records do not verify is never unpickled
    (its reference included): it is refused in the ledger and its report is one breach, so the breach event
    and its automations (a canary's rollback) follow."""
    import bentoml

    params = load_params(Layout(settings.project_dir).params_file, usecase=usecase)
    try:
        version, reference = _reference(ref, settings=settings, where="monitor")
    except ModelRefused as refused:
        breach = REFUSED.format(reason=refused)
        return {"model": ref, "since": since, "until": until, "n": 0, "breaches": [breach], "refused": str(refused)}
    window = served_window(make_engine(settings.db_url), model=ref, since=since, until=until)
    if window.empty:
        return {"model": ref, "since": since, "until": until, "n": 0, "breaches": [], "note": "no decisions"}
    answered = window[window["decision"] != ERROR]  # the model raised on the others: nothing to explain
    attributions = None
    if len(answered):
        model = bentoml.sklearn.load_model(version.model_tag)
        sample = answered.sample(n=min(SHAP_SAMPLE, len(answered)), random_state=params.monitor.seed)
        train = Layout(settings.project_dir).prepared_train
        background = pd.read_parquet(train).sample(n=200, random_state=0, replace=True) if train.is_file() else None
        attributions = mean_attributions(model, sample, background=background)
    favourable = str(params.usecase.label.favourable)
    found = report(
        window, reference, limits=limits_of(params.monitor), favourable=favourable, attributions=attributions
    )
    return {"model": ref, "since": since, "until": until, **found}


def parquet_report(
    source: str,
    ref: Mapping[str, Any],
    *,
    limits: Limits,
    favourable: str,
    engine: Engine = "stream",
    options: Mapping[str, Any] | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """The report of a window exported as Parquet (a file or folder, local or s3://: the columns `report` reads),
    from counts taken chunk by chunk in this process or partition by partition on Dask (`engine`), so memory does
    not grow with rows; the latency percentiles read that one column whole. Attributions are not computed."""
    names = columns_of(source, options=options)
    described = {**ref["inputs"], PROBABILITY: ref["prediction"]}
    if engine == "dask":
        counted = dask_counts(source, described, options=options, client=client)
        tallied = dask_tally(source, ref["groups"], favourable=favourable, options=options, client=client)
    else:
        counted = stream_counts(source, described, options=options)
        tallied = stream_tally(source, ref["groups"], favourable=favourable, options=options)
    latencies = None
    if LATENCY in names:
        latencies = read_column(source, LATENCY, options=options).to_numpy(dtype=float)
    inputs = {column: counted[column] for column in ref["inputs"]}
    return judge(
        inputs=drift_of_counts(inputs, ref["inputs"], thresholds=limits.drift),
        prediction=verdict(
            ref["prediction"],
            counted[PROBABILITY],
            column=PROBABILITY,
            thresholds=Thresholds(psi=limits.prediction_psi),
        ),
        tallied=tallied,
        ref=ref,
        limits=limits,
        latencies=latencies,
    )


@task(name="monitor-parquet", cache_policy=NO_CACHE)
def monitor_parquet(ref: str, *, source: str, usecase: str | None = None, settings: Settings) -> dict[str, Any]:
    """The report of model `ref`'s decisions exported to Parquet at `source` (see `parquet_report`): counted on
    the Dask cluster this task runs on when `monitor.task_runner` is dask, else in chunks here."""
    params = load_params(Layout(settings.project_dir).params_file, usecase=usecase)
    try:
        _, reference = _reference(ref, settings=settings, where="monitor")
    except ModelRefused as refused:
        return {"model": ref, "source": source, "n": 0, "breaches": [REFUSED.format(reason=refused)]}
    found = functools.partial(
        parquet_report,
        source,
        reference,
        limits=limits_of(params.monitor),
        favourable=str(params.usecase.label.favourable),
        options=storage_options(settings.s3_endpoint_url),
    )
    if params.monitor.task_runner == "dask":
        from prefect_dask import get_dask_client

        with get_dask_client() as client:
            return {"model": ref, "source": source, **found(engine="dask", client=client)}
    return {"model": ref, "source": source, **found(engine="stream")}
