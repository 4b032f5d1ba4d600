"""The feature frame: derived group columns, the 0/1 label, and which columns the model may see."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from steward.params import Params
from steward.usecase import UseCase
from tasks.data.suites import LABEL

MISSING_COLUMNS = "the data lacks column(s) {columns} named in usecases/{name}/usecase.yaml"


def read_snapshot(path: Path | str) -> pd.DataFrame:
    """A raw snapshot as every stage reads it: CSV (gzipped if named .gz), only empty fields missing.

    pandas would also read 'NA', 'None' or 'null' as missing: in a category those are values.
    """
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def to_feature_frame(raw: pd.DataFrame, *, usecase: UseCase) -> pd.DataFrame:
    """Raw rows → feature frame: the raw columns but the label, plus each derived group and a 0/1 label.

    The label is 1 where the raw label is the use case's favourable value (whichever class that is).
    """
    needed = [usecase.label.column, *usecase.protected, *(g.column for g in usecase.groups.values())]
    missing = sorted({c for c in needed if c not in raw.columns})
    if missing:
        raise KeyError(MISSING_COLUMNS.format(columns=", ".join(missing), name=usecase.name))
    frame = raw.drop(columns=[usecase.label.column])
    for name, group in usecase.groups.items():
        frame[name] = group.assign(raw[group.column])
    frame[LABEL] = (raw[usecase.label.column] == usecase.label.favourable).astype("int64")
    return frame


def model_features(columns: list[str] | pd.Index, *, params: Params) -> list[str]:
    """The columns the model is trained on: never the id, label, groups, dropped columns or proxies, and no
    protected attribute unless prepare.exclude_protected is false."""
    usecase = params.usecase
    hidden = usecase.not_features | {LABEL}
    if params.prepare.exclude_protected:
        hidden |= set(usecase.protected)
    return [c for c in columns if c not in hidden]
