"""A Parquet window read in chunks and column passes gets the figures of the same window held in one frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.monitor import stream
from tasks.monitor.drift import Thresholds, drift, drift_of_counts
from tasks.monitor.sketch import reference
from usecases.german_credit.generator import generate_applications

COLUMNS = ["duration_months", "credit_amount", "age", "installment_rate", "checking_status", "purpose", "housing"]


@pytest.fixture(scope="module")
def ref():
    return reference(generate_applications(20_000, seed=1), COLUMNS)


@pytest.fixture(scope="module")
def window():
    frame = generate_applications(30_000, seed=2, drift=0.5)
    frame.loc[::97, "credit_amount"] = np.nan
    frame.loc[:40, "housing"] = "houseboat"
    return frame


def test_a_file_read_in_small_chunks_gives_the_frames_figures(tmp_path, ref, window):
    path = tmp_path / "window.parquet"
    window.to_parquet(path, row_group_size=4_000)
    counted = stream.stream_counts(str(path), ref, batch_bytes=8 * 1_500 * len(COLUMNS))  # 1,500-row chunks
    assert drift_of_counts(counted, ref, thresholds=Thresholds()) == drift(window, ref, thresholds=Thresholds())


def test_a_folder_of_files_read_in_column_passes_gives_the_frames_figures(tmp_path, ref, window, monkeypatch):
    folder = tmp_path / "window"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(window)), 3)):
        window.iloc[part].to_parquet(folder / f"part-{i}.parquet")
    monkeypatch.setattr(stream, "COLUMNS_PER_PASS", 2)
    found = stream.parquet_drift(str(folder), ref, thresholds=Thresholds())
    assert found == drift(window, ref, thresholds=Thresholds())
    by_column = {d.column: d for d in found}
    assert by_column["credit_amount"].drifted and by_column["housing"].unseen == {"houseboat": 41}


def test_a_window_without_a_referenced_column_is_refused_by_name(tmp_path, ref, window):
    path = tmp_path / "window.parquet"
    window.drop(columns="purpose").to_parquet(path)
    with pytest.raises(ValueError) as caught:
        stream.parquet_drift(str(path), ref, thresholds=Thresholds())
    assert str(caught.value) == "the window lacks the column 'purpose' the reference describes"


def test_a_missing_window_is_named(tmp_path, ref):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.parquet"):
        stream.parquet_drift(str(tmp_path / "nowhere.parquet"), ref, thresholds=Thresholds())


def test_an_s3_endpoint_becomes_fsspecs_option():
    assert stream.storage_options("http://127.0.0.1:9000") == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}
    }
    assert stream.storage_options(None) == {}


def test_an_exported_window_reads_back_page_by_page_with_the_first_pages_types(tmp_path):
    pages = [
        pd.DataFrame({"x": [1.0, 2.0], "outcome": [None, None], "sex": ["f", "m"]}),
        pd.DataFrame({"x": [3.0], "outcome": ["good"], "sex": ["f"], "late": [1]}),  # `late`: not in the first
        pd.DataFrame({"x": [np.nan, 5.0], "outcome": ["bad", None]}),
    ]
    path = tmp_path / "window.parquet"
    assert stream.export_window(iter(pages), str(path)) == 5
    back = pd.read_parquet(path)
    assert back.columns.tolist() == ["x", "outcome", "sex"]
    assert back["x"].tolist()[:3] == [1.0, 2.0, 3.0] and np.isnan(back["x"][3]) and back["x"][4] == 5.0
    assert [None if pd.isna(v) else v for v in back["outcome"]] == [None, None, "good", "bad", None]
    assert [None if pd.isna(v) else v for v in back["sex"]] == ["f", "m", "f", None, None]


def test_an_empty_window_is_not_exported(tmp_path):
    with pytest.raises(ValueError) as caught:
        stream.export_window(iter([]), str(tmp_path / "w.parquet"))
    assert str(caught.value) == f"no decisions in the window: nothing written to {tmp_path / 'w.parquet'}"
    assert not (tmp_path / "w.parquet").exists()
