"""The feature frame: derived columns, the label, and which columns the model may see."""

from __future__ import annotations

import numpy as np
import pandas as pd

from steward.params import DataParams, Params

AGE_GROUP = "age_group"
LABEL = "label"
MISSING_COLUMNS = "the data lacks column(s) {columns} named in params.yaml data"


def age_groups(age: pd.Series, *, threshold: int) -> pd.Series:
    """'under {t}' / '{t} and over' (the audit's age grouping)."""
    labels = np.where(age.to_numpy() < threshold, f"under {threshold}", f"{threshold} and over")
    return pd.Series(labels, index=age.index, name=AGE_GROUP, dtype="str")


def to_feature_frame(raw: pd.DataFrame, *, data: DataParams) -> pd.DataFrame:
    """Raw applications → feature frame: the raw columns but the label, plus age_group and a 0/1 label."""
    needed = [data.label, data.age_column, *data.protected]
    missing = sorted({c for c in needed if c not in raw.columns})
    if missing:
        raise KeyError(MISSING_COLUMNS.format(columns=", ".join(missing)))
    frame = raw.drop(columns=[data.label])
    frame[AGE_GROUP] = age_groups(raw[data.age_column], threshold=data.age_threshold)
    frame[LABEL] = (raw[data.label] == data.positive_label).astype("int64")
    return frame


def model_features(columns: list[str] | pd.Index, *, params: Params) -> list[str]:
    """The columns the model is trained on: not the id or label, and no protected attribute by default."""
    data = params.data
    hidden = {data.id_column, data.label, LABEL}
    if params.prepare.exclude_protected:
        hidden |= {*data.protected, AGE_GROUP}
    hidden |= set(params.prepare.drop_features)
    return [c for c in columns if c not in hidden]
