"""Drift of a Parquet window on a local Dask cluster (worker processes on 127.0.0.1) and from S3 (moto_server):
the figures equal the single-process ones exactly, whatever the partitions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import numpy as np
import pytest
from distributed import Client, LocalCluster

from tasks.monitor import stream
from tasks.monitor.drift import Thresholds, drift
from tasks.monitor.sketch import reference
from tests.unit.tasks.monitor.served import everything_window, fitted_model, reference_of
from usecases.german_credit.generator import generate_applications

pytestmark = pytest.mark.integration
COLUMNS = ["duration_months", "credit_amount", "age", "installment_rate", "checking_status", "purpose", "housing"]


@contextmanager
def _cluster() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as local,
        Client(local) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def cluster():
    with _cluster() as client:
        yield client


@pytest.fixture(scope="module")
def window():
    frame = generate_applications(40_000, seed=2, drift=0.5)
    frame.loc[::89, "age"] = np.nan
    return frame


@pytest.fixture(scope="module")
def ref():
    return reference(generate_applications(20_000, seed=1), COLUMNS)


def test_dask_partitions_give_the_single_process_figures_exactly(tmp_path, cluster, window, ref):
    import dask.dataframe as dd

    folder = tmp_path / "window"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(window)), 5)):
        window.iloc[part].to_parquet(folder / f"part-{i}.parquet", row_group_size=3_000)
    assert dd.read_parquet(str(folder)).npartitions >= 5
    on_dask = stream.dask_counts(str(folder), ref, client=cluster)
    in_process = stream.stream_counts(str(folder), ref)
    for column in COLUMNS:
        assert on_dask[column].n == in_process[column].n
        if on_dask[column].cells is not None:
            assert np.array_equal(on_dask[column].cells, in_process[column].cells)
            assert np.array_equal(on_dask[column].bins, in_process[column].bins)
        else:
            assert on_dask[column].labels == in_process[column].labels
    expected = drift(window, ref, thresholds=Thresholds())
    assert stream.parquet_drift(str(folder), ref, thresholds=Thresholds(), engine="dask", client=cluster) == expected


def test_a_window_on_s3_streams_and_runs_on_dask(tmp_path, s3_endpoint, aws_env, window, ref, request):
    """The workers read S3 with the credentials of their own environment (here the test's, set before they start)."""
    bucket = "steward-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:12]
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    for i, part in enumerate(np.array_split(np.arange(len(window)), 3)):
        path = tmp_path / f"part-{i}.parquet"
        window.iloc[part].to_parquet(path)
        s3.upload_file(str(path), bucket, f"windows/2026-12-03/part-{i}.parquet")
    uri, options = f"s3://{bucket}/windows/2026-12-03", stream.storage_options(s3_endpoint)
    expected = drift(window, ref, thresholds=Thresholds())
    assert stream.parquet_drift(uri, ref, thresholds=Thresholds(), options=options) == expected
    with _cluster() as cluster:
        on_dask = stream.parquet_drift(
            uri, ref, thresholds=Thresholds(), options=options, engine="dask", client=cluster
        )
    assert on_dask == expected


def test_a_whole_report_on_dask_equals_the_frames(tmp_path, cluster):
    """Drift, prediction drift, group rates, error rates, reviews and latency of a window of five files, each
    partition counted on a worker: the report equals the one from the frame (attributions aside)."""
    from tasks.monitor.window import Limits, parquet_report, report

    model = fitted_model()
    reference = reference_of(model)
    served = everything_window(model)
    folder = tmp_path / "window"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(served)), 5)):
        served.iloc[part].to_parquet(folder / f"part-{i}.parquet")
    limits = Limits(max_p95_latency_ms=100.0)
    expected = report(served, reference, limits=limits, favourable="good")
    on_dask = parquet_report(str(folder), reference, limits=limits, favourable="good", engine="dask", client=cluster)
    assert on_dask == expected and expected["breaches"]
