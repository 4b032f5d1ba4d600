"""The shipped use cases, for tests parametrized over every one of them."""

from __future__ import annotations

from functools import cache
from typing import Any

from steward.params import Params, parse_params
from steward.usecase import UseCase, load_usecase, shipped
from tests.conftest import PROJECT_DIR

SHIPPED = shipped(PROJECT_DIR)


@cache
def usecase(name: str = "german_credit") -> UseCase:
    return load_usecase(PROJECT_DIR, name)


def params_for(name: str = "german_credit", **sections: Any) -> Params:
    """Params with defaults for every section but those given, for the shipped use case `name`."""
    return Params(usecase=usecase(name), **sections)


def parse_for(raw: dict[str, Any], name: str = "german_credit") -> Params:
    """params.yaml's mapping `raw`, validated as a file selecting the shipped use case `name` would be."""
    return parse_params({"usecase": name, **raw}, project_dir=PROJECT_DIR)
