"""German credit's dataset: the vendored UCI file `data/german/german.data` decoded into the readable
`data/german_credit.csv` the use case trains on (its datasheet says how). Regenerate the CSV with
`python -m usecases.german_credit.dataset` from the project root; nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from steward.usecase import DataError

GERMAN_DATA = Path("data/german/german.data")
GERMAN_CSV = Path("data/german_credit.csv")

# Column order of german.data, as listed in the UCI documentation.
GERMAN_RAW_COLUMNS: list[str] = [
    "status", "duration", "credit_history", "purpose", "credit_amount", "savings",
    "present_employment", "installment_rate", "status_sex", "other_debtors", "present_residence_since",
    "property", "age", "installment_plans", "housing", "number_of_existing_credits", "job",
    "number_of_people_liable_for", "telephone", "foreign_worker", "credit",
]  # fmt: skip

# The documented translation of the A-codes (data/german/codes.json), shortened by hand to readable values.
# status_sex is split into personal_status and sex below.
GERMAN_CODES: dict[str, dict[str, str]] = {
    "status": {"A11": "< 0 DM", "A12": "0-200 DM", "A13": ">= 200 DM", "A14": "no checking account"},
    "credit_history": {
        "A30": "no credits or all paid",
        "A31": "all paid at this bank",
        "A32": "existing paid duly",
        "A33": "past delays",
        "A34": "critical account",
    },
    "purpose": {
        "A40": "new car",
        "A41": "used car",
        "A42": "furniture/equipment",
        "A43": "radio/television",
        "A44": "domestic appliances",
        "A45": "repairs",
        "A46": "education",
        "A47": "vacation",
        "A48": "retraining",
        "A49": "business",
        "A410": "other",
    },
    "savings": {
        "A61": "< 100 DM",
        "A62": "100-500 DM",
        "A63": "500-1000 DM",
        "A64": ">= 1000 DM",
        "A65": "unknown or none",
    },
    "present_employment": {
        "A71": "unemployed",
        "A72": "< 1 year",
        "A73": "1-4 years",
        "A74": "4-7 years",
        "A75": ">= 7 years",
    },
    "personal_status": {
        "A91": "divorced/separated",
        "A92": "divorced/separated/married",
        "A93": "single",
        "A94": "married/widowed",
        "A95": "single",
    },
    "sex": {"A91": "male", "A92": "female", "A93": "male", "A94": "male", "A95": "female"},
    "other_debtors": {"A101": "none", "A102": "co-applicant", "A103": "guarantor"},
    "property": {
        "A121": "real estate",
        "A122": "savings agreement or life insurance",
        "A123": "car or other",
        "A124": "unknown or none",
    },
    "installment_plans": {"A141": "bank", "A142": "stores", "A143": "none"},
    "housing": {"A151": "rent", "A152": "own", "A153": "for free"},
    "job": {
        "A171": "unskilled non-resident",
        "A172": "unskilled resident",
        "A173": "skilled",
        "A174": "highly qualified",
    },
    "telephone": {"A191": "no", "A192": "yes"},
    "foreign_worker": {"A201": "yes", "A202": "no"},
    "credit": {"1": "good", "2": "bad"},
}

# Decoded column -> (raw column, code table or None for integers). Order is the published schema.
GERMAN_SCHEMA: dict[str, tuple[str, str | None]] = {
    "checking_status": ("status", "status"),
    "duration_months": ("duration", None),
    "credit_history": ("credit_history", "credit_history"),
    "purpose": ("purpose", "purpose"),
    "credit_amount": ("credit_amount", None),
    "savings": ("savings", "savings"),
    "employment_since": ("present_employment", "present_employment"),
    "installment_rate": ("installment_rate", None),
    "personal_status": ("status_sex", "personal_status"),
    "sex": ("status_sex", "sex"),
    "other_debtors": ("other_debtors", "other_debtors"),
    "residence_since": ("present_residence_since", None),
    "property": ("property", "property"),
    "age": ("age", None),
    "other_installment_plans": ("installment_plans", "installment_plans"),
    "housing": ("housing", "housing"),
    "existing_credits": ("number_of_existing_credits", None),
    "job": ("job", "job"),
    "people_liable": ("number_of_people_liable_for", None),
    "telephone": ("telephone", "telephone"),
    "foreign_worker": ("foreign_worker", "foreign_worker"),
    "credit_risk": ("credit", "credit"),
}
GERMAN_COLUMNS: list[str] = ["applicant_id", *GERMAN_SCHEMA]
GERMAN_INT_COLUMNS: list[str] = [col for col, (_, table) in GERMAN_SCHEMA.items() if table is None]

ERR_FIELD_COUNT = "german.data line {line}: expected {expected} fields, got {got}"
ERR_UNKNOWN_CODE = "german.data column {column!r}: unknown code(s) {codes}"
ERR_NOT_INTEGER = "german.data column {column!r}: non-integer value(s) {values}"


def decode_german(raw_text: str) -> pd.DataFrame:
    """Decode the text of german.data into the readable schema of data/german_credit.csv."""
    rows = [line.split() for line in raw_text.splitlines() if line.strip()]
    for number, fields in enumerate(rows, start=1):
        if len(fields) != len(GERMAN_RAW_COLUMNS):
            raise DataError(ERR_FIELD_COUNT.format(line=number, expected=len(GERMAN_RAW_COLUMNS), got=len(fields)))
    raw = pd.DataFrame(rows, columns=GERMAN_RAW_COLUMNS, dtype=str)

    decoded: dict[str, pd.Series] = {
        "applicant_id": pd.Series([f"G{i:04d}" for i in range(1, len(raw) + 1)], dtype=str)
    }
    for column, (raw_column, table) in GERMAN_SCHEMA.items():
        values = raw[raw_column]
        if table is None:
            bad = sorted(set(values[~values.str.fullmatch(r"\d+")]))
            if bad:
                raise DataError(ERR_NOT_INTEGER.format(column=raw_column, values=bad))
            decoded[column] = values.astype("int64")
        else:
            codes = GERMAN_CODES[table]
            unknown = sorted(set(values) - codes.keys())
            if unknown:
                raise DataError(ERR_UNKNOWN_CODE.format(column=raw_column, codes=unknown))
            decoded[column] = values.map(codes).astype(str)
    return pd.DataFrame(decoded, columns=GERMAN_COLUMNS)


def write_german_csv(*, source: Path, target: Path) -> None:
    """Decode ``source`` (german.data) and write the readable CSV to ``target``."""
    frame = decode_german(source.read_text(encoding="ascii"))
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target, index=False, lineterminator="\n")


if __name__ == "__main__":
    write_german_csv(source=GERMAN_DATA, target=GERMAN_CSV)
