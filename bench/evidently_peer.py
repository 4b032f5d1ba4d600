"""The peer side of bench/monitor.py: Evidently's data drift preset on the same two parquet files, run by
its own virtual environment (.bench/evidently: Evidently 0.7.23 needs pandas 2.3; Steward runs pandas 3).

Usage: .bench/evidently/bin/python bench/evidently_peer.py REFERENCE.parquet CURRENT.parquet COLUMNS.json
Prints one JSON line: {"seconds": ..., "drifted": {column: bool}, "methods": {column: method}}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main() -> None:
    reference_path, current_path, columns_path = sys.argv[1:4]
    columns = json.loads(Path(columns_path).read_text())
    started = time.perf_counter()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    definition = DataDefinition(numerical_columns=columns["numeric"], categorical_columns=columns["categorical"])
    result = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - started
    drifted, methods = {}, {}
    for metric in result.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        method, threshold, value = config["method"], config["threshold"], metric["value"]
        distance = "distance" in method.lower() or "psi" in method.lower()
        drifted[config["column"]] = bool(value >= threshold if distance else value < threshold)
        methods[config["column"]] = f"{method} {'>=' if distance else '<'} {threshold}"
    print(json.dumps({"seconds": seconds, "drifted": drifted, "methods": methods}))


if __name__ == "__main__":
    main()
