"""Adult income's dataset: the vendored UCI files `data/adult/adult.data.gz` and `adult.test.gz` (the 1994
US Census extract) read into readable columns, joined, and given a `person_id`: `data/adult_income.csv.gz`,
the snapshot the use case trains on. Regenerate it with `python -m usecases.adult_income.dataset`.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

from steward.usecase import DataError

ADULT_DATA = Path("data/adult/adult.data.gz")
ADULT_TEST = Path("data/adult/adult.test.gz")
ADULT_CSV = Path("data/adult_income.csv.gz")
ID_COLUMN = "person_id"
ADULT_COLUMNS: list[str] = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
    "income",
]  # fmt: skip
ADULT_LABELS = frozenset({">50K", "<=50K"})

ERR_ADULT_LABEL = "adult file {path}: unexpected income label(s) {labels}"


def load_adult(path: Path) -> pd.DataFrame:
    """Read adult.data.gz or adult.test.gz into readable columns; ``?`` becomes missing.

    The test file's leading comment line is skipped and the trailing dot of its labels is removed, so
    both files yield ``income`` in {">50K", "<=50K"}.
    """
    frame = pd.read_csv(
        path,
        header=None,
        names=ADULT_COLUMNS,
        sep=",",
        skipinitialspace=True,
        na_values=["?"],
        keep_default_na=False,
        comment="|",  # only the test file's first line ("|1x3 Cross validator") contains it
        compression="gzip",
    )
    frame["income"] = frame["income"].str.rstrip(".")
    labels = set(frame["income"].dropna()) - ADULT_LABELS
    if labels or frame["income"].isna().any():
        raise DataError(ERR_ADULT_LABEL.format(path=path, labels=sorted(labels)))
    return frame


def adult_income(*, train: Path = ADULT_DATA, test: Path = ADULT_TEST) -> pd.DataFrame:
    """Both files in their published order (training rows first), with `person_id` A00001, A00002, ..."""
    frame = pd.concat([load_adult(train), load_adult(test)], ignore_index=True)
    frame.insert(0, ID_COLUMN, [f"A{i:05d}" for i in range(1, len(frame) + 1)])
    return frame


def write_adult_csv(*, target: Path = ADULT_CSV) -> None:
    """The joined frame as gzipped CSV, byte-for-byte the same on every run (no timestamp in the gzip header)."""
    text = adult_income().to_csv(index=False, lineterminator="\n").encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as out:
        out.write(text)


if __name__ == "__main__":
    write_adult_csv()
