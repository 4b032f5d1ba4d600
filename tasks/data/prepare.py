"""Prepare stage: validated raw applications → feature frame → seeded, stratified train/test split."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from steward.params import Params
from tasks.data.features import LABEL, read_snapshot, to_feature_frame


def split(frame: pd.DataFrame, *, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out split stratified by label (and reproducible by prepare.seed)."""
    train, test = train_test_split(
        frame,
        test_size=params.prepare.test_size,
        random_state=params.prepare.seed,
        stratify=frame[LABEL],
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def main() -> None:
    from tasks.stage import stage_context

    ctx = stage_context()
    layout, params = ctx.layout, ctx.params
    frame = to_feature_frame(read_snapshot(layout.raw_data), usecase=params.usecase)
    train, test = split(frame, params=params)
    for part, path in ((train, layout.prepared_train), (test, layout.prepared_test)):
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(path, index=False)
    print(f"prepare: {len(train)} training rows, {len(test)} held out")


if __name__ == "__main__":
    from tasks.stage import run_stage

    run_stage(main)
