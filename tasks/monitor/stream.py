"""A monitoring window too large for one frame: a Parquet file or folder (on local disk or S3) read in chunks, or
split into partitions on a Dask cluster, each chunk or partition counted against the reference
(tasks/monitor/sketch.py) and tallied per group (tasks/monitor/tally.py), and the counts added. Counts are
integers, so both ways give the figures of the whole window held in one frame, to the bit, with memory that does
not grow with rows.

A file is read a row group at a time, over at most `COLUMNS_PER_PASS` columns, and counted in frames of at most
`BATCH_BYTES` of numbers: memory follows the row group, not the file, and a window of a thousand columns is read in
passes over column groups, each reading only its columns' pages. `export_window` writes such a file from the
prediction log, a page at a time.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar

import pandas as pd

from tasks.monitor.drift import NO_COLUMN, ColumnDrift, Thresholds, drift_of_counts
from tasks.monitor.sketch import ColumnCounts, counts, merge, points
from tasks.monitor.tally import WindowTally, tally

BATCH_BYTES = 64 * 2**20
COLUMNS_PER_PASS = 64
LATENCY = "latency_ms"
NOT_LOGGED = "the window lacks the column {column!r} of the prediction log (`steward monitor --export` writes it)"
NOTHING_TO_EXPORT = "no decisions in the window: nothing written to {destination}"
Engine = Literal["stream", "dask"]
Summed = TypeVar("Summed")


def storage_options(endpoint_url: str | None) -> dict[str, Any]:
    """fsspec's options for an S3 endpoint other than AWS's (MinIO, moto); credentials come from the environment
    as boto3 reads them."""
    return {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else {}


def _dataset(source: str, options: Mapping[str, Any]) -> Any:
    import fsspec
    import pyarrow.dataset as ds

    filesystem, path = fsspec.core.url_to_fs(source, **options)
    return ds.dataset(path, format="parquet", filesystem=filesystem)


def columns_of(source: str, *, options: Mapping[str, Any] | None = None) -> list[str]:
    """The columns of the Parquet window at `source`."""
    return list(_dataset(source, options or {}).schema.names)


def read_column(source: str, column: str, *, options: Mapping[str, Any] | None = None) -> pd.Series:
    """One column of the Parquet window at `source`, whole."""
    return _dataset(source, options or {}).to_table(columns=[column]).column(0).to_pandas()


def _check_columns(names: list[str], needed: Iterable[str], *, message: str = NO_COLUMN) -> None:
    missing = [c for c in needed if c not in names]
    if missing:
        raise ValueError(message.format(column=missing[0]))


def _chunks(dataset: Any, columns: list[str], batch_bytes: int | None) -> Iterator[pd.DataFrame]:
    """`columns` of every file of `dataset`, a row group at a time (pyarrow's dataset scanner buffers ahead and
    grows with the file), each cut into frames of about `batch_bytes` (default BATCH_BYTES) of numbers."""
    import pyarrow.parquet as pq

    rows = max(1024, (batch_bytes or BATCH_BYTES) // (8 * max(1, len(columns))))
    for path in dataset.files:
        with dataset.filesystem.open_input_file(path) as source:
            parquet = pq.ParquetFile(source)
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=columns)
                for start in range(0, table.num_rows, rows):
                    yield table.slice(start, rows).to_pandas()
                del table


def stream_counts(
    source: str, ref: Mapping[str, Any], *, options: Mapping[str, Any] | None = None, batch_bytes: int | None = None
) -> dict[str, ColumnCounts]:
    """The counts of the window at `source` (a Parquet file or folder, a path or an fsspec URL such as s3://),
    read in chunks in this process."""
    dataset = _dataset(source, options or {})
    _check_columns(dataset.schema.names, ref)
    columns = list(ref)
    total: dict[str, ColumnCounts] = {}
    prepared = {c: points(ref[c]) for c in columns if ref[c]["kind"] == "numeric"}
    for start in range(0, len(columns), COLUMNS_PER_PASS):
        part = columns[start : start + COLUMNS_PER_PASS]
        described = {c: ref[c] for c in part}
        for chunk in _chunks(dataset, part, batch_bytes):
            total = merge(total, counts(described, chunk, prepared=prepared))
    return total


def _tallied_columns(names: list[str], groups: Iterable[str]) -> list[str]:
    _check_columns(names, ["decision", "outcome"], message=NOT_LOGGED)
    wanted = ["decision", "outcome", "review", *(name.partition("=")[0] for name in groups)]
    return [c for c in dict.fromkeys(wanted) if c in names]


def stream_tally(
    source: str,
    groups: Iterable[str],
    *,
    favourable: str,
    options: Mapping[str, Any] | None = None,
    batch_bytes: int | None = None,
) -> WindowTally:
    """The `tally` of the window at `source`, read in chunks in this process."""
    dataset = _dataset(source, options or {})
    groups = list(groups)
    total = WindowTally()
    for chunk in _chunks(dataset, _tallied_columns(dataset.schema.names, groups), batch_bytes):
        total = total + tally(chunk, groups, favourable=favourable)
    return total


def _on_dask(
    source: str,
    columns: list[str],
    summarise: Callable[[pd.DataFrame], Summed],
    add: Callable[[Summed, Summed], Summed],
    *,
    options: Mapping[str, Any],
    client: Any,
) -> Summed:
    """`summarise` of each partition of `columns` of the window at `source` on Dask, added up in a tree."""
    import dask
    import dask.dataframe as dd

    frame = dd.read_parquet(source, columns=columns, storage_options=dict(options))
    parts = [dask.delayed(summarise)(partition) for partition in frame.to_delayed()]
    while len(parts) > 1:
        paired = [dask.delayed(add)(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        parts = paired + parts[len(parts) - len(parts) % 2 :]
    if client is not None:
        return client.compute(parts[0]).result()
    return dask.compute(parts[0])[0]


def dask_counts(
    source: str, ref: Mapping[str, Any], *, options: Mapping[str, Any] | None = None, client: Any = None
) -> dict[str, ColumnCounts]:
    """The counts of the window at `source`, one partition per task on Dask (`client`'s cluster, or the current
    scheduler), added up in a tree."""
    _check_columns(columns_of(source, options=options), ref)
    described = dict(ref)
    prepared = {c: points(ref[c]) for c in ref if ref[c]["kind"] == "numeric"}
    return _on_dask(
        source,
        list(ref),
        lambda part: counts(described, part, prepared=prepared),
        merge,
        options=options or {},
        client=client,
    )


def dask_tally(
    source: str,
    groups: Iterable[str],
    *,
    favourable: str,
    options: Mapping[str, Any] | None = None,
    client: Any = None,
) -> WindowTally:
    """The `tally` of the window at `source`, one partition per task on Dask, added up in a tree."""
    groups = list(groups)
    columns = _tallied_columns(columns_of(source, options=options), groups)
    return _on_dask(
        source,
        columns,
        lambda part: tally(part, groups, favourable=favourable),
        operator.add,
        options=options or {},
        client=client,
    )


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


def export_window(pages: Iterable[pd.DataFrame], destination: str, *, options: Mapping[str, Any] | None = None) -> int:
    """Write a window's pages (`steward.windows.served_pages`) to one Parquet file at `destination` (a path or an
    fsspec URL such as s3://), a row group per page, so the window never sits in one frame; the rows written.
    Columns are the first page's, with its types (a column with no value there is text); later pages are cast to
    them, and a column only a later page has is left out (a served window's columns are the use case's)."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    pages = iter(pages)
    first = next(pages, None)
    if first is None:
        raise ValueError(NOTHING_TO_EXPORT.format(destination=destination))
    table = pa.Table.from_pandas(first, preserve_index=False)
    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema])
    written = 0
    with fsspec.open(destination, "wb", **(options or {})) as sink, pq.ParquetWriter(sink, schema) as writer:
        for page in itertools.chain([first], pages):
            rows = page.reindex(columns=schema.names)
            writer.write_table(pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
            written += len(page)
    return written
