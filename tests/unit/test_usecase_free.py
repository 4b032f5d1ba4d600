"""Nothing under steward/, tasks/, flows/ or deployments/ knows a use case: every column, value and word of one
lives in its folder (usecases/<name>/) and its raw suite. Searched in the code, not asserted in prose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR
from tests.usecases import SHIPPED, usecase

GENERIC_CODE = ("steward", "tasks", "flows", "deployments")
# Everyday words that are also column or value names somewhere (a sex, an age): named in code for their
# ordinary meaning (an `age_group` example in a docstring is still caught, as the exact identifiers are).
ORDINARY = {"sex", "age", "race", "job", "housing", "property", "telephone", "purpose", "education", "income"}
# The draft profiler guesses protected attributes from common column names, the shipped ones among them.
PROTECTED_NAME_GUESSES = ("tasks/data/draft.py", ("foreign_worker", "marital_status", "native_country"))


def _code_files() -> list[Path]:
    files = [p for folder in GENERIC_CODE for p in (PROJECT_DIR / folder).rglob("*") if p.is_file()]
    return sorted(p for p in files if p.suffix in {".py", ".j2", ".html", ".md", ".yaml", ".json", ".css"})


def _identifiers(name: str) -> set[str]:
    """A use case's column names and category values distinctive enough to be its own."""
    suite = json.loads((PROJECT_DIR / usecase(name).raw_suite).read_text())
    found: set[str] = set()
    for expectation in suite["expectations"]:
        kwargs = expectation["kwargs"]
        found |= set(kwargs.get("column_set", [])) | {kwargs.get("column")} - {None}
        found |= {str(v) for v in kwargs.get("value_set", []) if isinstance(v, str) and len(v) > 4 and " " in v}
    found.add(usecase(name).id_column)
    return {term for term in found if term.lower() not in ORDINARY and len(term) > 3}


def _label_literals(name: str) -> set[str]:
    """The label's values as string literals in code ('good', ">50K"): a word in prose is no harm."""
    label = usecase(name).label
    return {f"{quote}{value}{quote}" for value in (label.favourable, label.unfavourable) for quote in "'\""}


def _hits(term: str) -> list[str]:
    pattern = re.compile(rf"(?<![\w-]){re.escape(term)}(?![\w-])", re.IGNORECASE if " " in term else 0)
    guessed, names = PROTECTED_NAME_GUESSES
    return [
        f"{path.relative_to(PROJECT_DIR)}:{number}: {line.strip()}"
        for path in _code_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if pattern.search(line) and not (str(path.relative_to(PROJECT_DIR)) == guessed and term in names)
    ]


@pytest.mark.parametrize("name", SHIPPED)
def test_no_column_value_or_label_of_a_shipped_use_case_is_named_in_generic_code(name):
    found = {term: hits for term in sorted(_identifiers(name)) if (hits := _hits(term))}
    assert found == {}
    literals = {term: hits for term in sorted(_label_literals(name)) if (hits := _literal_hits(term))}
    assert literals == {}


def _literal_hits(literal: str) -> list[str]:
    return [
        f"{path.relative_to(PROJECT_DIR)}:{number}: {line.strip()}"
        for path in _code_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if literal in line
    ]


def test_the_search_would_find_one():
    assert "credit_amount" in _identifiers("german_credit") and "marital_status" in _identifiers("adult_income")
    assert _hits("def load_usecase") == ["steward/usecase.py:" + _line_of("steward/usecase.py", "def load_usecase")]
    assert _hits("def _identifiers") == []  # tests/ is not searched


def _line_of(relative: str, text: str) -> str:
    lines = (PROJECT_DIR / relative).read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if text in line)
    return f"{number}: {lines[number - 1].strip()}"


# deployments/prefect.yaml schedules each shipped use case by name (a deployment per use case): names only.
SCHEDULE = PROJECT_DIR / "deployments" / "prefect.yaml"


@pytest.mark.parametrize("word", [r"\bGerman\b", r"\bDM\b", r"\bStatlog\b", r"\bcensus\b", r"\bAdult\b"])
def test_no_dataset_or_currency_is_named_in_generic_code(word):
    pattern = re.compile(word)
    hits = [
        f"{path.relative_to(PROJECT_DIR)}:{number}: {line.strip()}"
        for path in _code_files()
        if path != SCHEDULE
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
