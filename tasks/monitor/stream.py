"""Drift of a window too large for one frame: a Parquet file or folder (on local disk or S3) read in chunks, or
split into partitions on a Dask cluster, each chunk or partition counted against the reference
(tasks/monitor/sketch.py) and the counts added. Counts are integers, so both ways give the figures of the whole
window held in one frame, to the bit, with memory that does not grow with rows.

Chunks are at most `BATCH_BYTES` of numbers at a time, over at most `COLUMNS_PER_PASS` columns: a window of a
thousand columns is read in passes over column groups, each pass reading only its columns' pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from tasks.monitor.drift import NO_COLUMN, ColumnDrift, Thresholds, drift_of_counts
from tasks.monitor.sketch import ColumnCounts, counts, merge

BATCH_BYTES = 64 * 2**20
COLUMNS_PER_PASS = 64
Engine = Literal["stream", "dask"]


def storage_options(endpoint_url: str | None) -> dict[str, Any]:
    """fsspec's options for an S3 endpoint other than AWS's (MinIO, moto); credentials come from the environment
    as boto3 reads them."""
    return {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else {}


def _dataset(source: str, options: Mapping[str, Any]) -> Any:
    import fsspec
    import pyarrow.dataset as ds

    filesystem, path = fsspec.core.url_to_fs(source, **options)
    return ds.dataset(path, format="parquet", filesystem=filesystem)


def _check_columns(names: list[str], ref: Mapping[str, Any]) -> None:
    missing = [c for c in ref if c not in names]
    if missing:
        raise ValueError(NO_COLUMN.format(column=missing[0]))


def stream_counts(
    source: str, ref: Mapping[str, Any], *, options: Mapping[str, Any] | None = None, batch_bytes: int = BATCH_BYTES
) -> dict[str, ColumnCounts]:
    """The counts of the window at `source` (a Parquet file or folder, a path or an fsspec URL such as s3://),
    read in chunks in this process."""
    dataset = _dataset(source, options or {})
    _check_columns(dataset.schema.names, ref)
    columns = list(ref)
    total: dict[str, ColumnCounts] = {}
    for start in range(0, len(columns), COLUMNS_PER_PASS):
        part = columns[start : start + COLUMNS_PER_PASS]
        described = {c: ref[c] for c in part}
        rows = max(1024, batch_bytes // (8 * len(part)))
        for batch in dataset.to_batches(columns=part, batch_size=rows, batch_readahead=1, fragment_readahead=1):
            total = merge(total, counts(described, batch.to_pandas()))
    return total


def dask_counts(
    source: str, ref: Mapping[str, Any], *, options: Mapping[str, Any] | None = None, client: Any = None
) -> dict[str, ColumnCounts]:
    """The counts of the window at `source`, one partition per task on Dask (`client`'s cluster, or the current
    scheduler), added up in a tree."""
    import dask
    import dask.dataframe as dd

    _check_columns(_dataset(source, options or {}).schema.names, ref)
    frame = dd.read_parquet(source, columns=list(ref), storage_options=dict(options or {}))
    parts = [dask.delayed(counts)(dict(ref), partition) for partition in frame.to_delayed()]
    while len(parts) > 1:
        pairs = range(0, len(parts) - 1, 2)
        parts = [dask.delayed(merge)(parts[i], parts[i + 1]) for i in pairs] + parts[len(parts) - len(parts) % 2 :]
    if not parts:
        return {}
    if client is not None:
        return dict(client.compute(parts[0]).result())
    return dict(dask.compute(parts[0])[0])


def parquet_drift(
    source: str,
    ref: Mapping[str, Any],
    *,
    thresholds: Thresholds,
    engine: Engine = "stream",
    options: Mapping[str, Any] | None = None,
    client: Any = None,
) -> list[ColumnDrift]:
    """The drift of every column `ref` describes in the Parquet window at `source`, counted by `engine`."""
    if engine == "dask":
        counted = dask_counts(source, ref, options=options, client=client)
    else:
        counted = stream_counts(source, ref, options=options)
    return drift_of_counts(counted, ref, thresholds=thresholds)
