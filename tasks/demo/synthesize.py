"""Synthetic rows for a use case: its generator plug-in if it names one, else the generic resampler.

The demo, the benches and the tests draw data through here, so every shipped use case gets them. A plug-in
(usecase.yaml `generator: module:function`) is called as `function(n, *, seed, scenario)` with the same
`Scenario` the resampler takes, and must return rows in the raw schema.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from typing import Protocol, cast

import pandas as pd

from steward.usecase import Shift, UseCase
from tasks.data.features import read_snapshot
from tasks.data.suites import read_suite
from tasks.demo.resample import Pattern, Scenario, resample

NO_DEMO = "use case {name!r} has no `demo` section: `steward run` does not know what to plant in its data"


class Generator(Protocol):
    def __call__(self, n: int, *, seed: int, scenario: Scenario) -> pd.DataFrame: ...


def synthesize(
    usecase: UseCase, project_dir: Path, *, n: int, seed: int, scenario: Scenario = Scenario()
) -> pd.DataFrame:
    """`n` rows of `usecase`'s raw schema; the same arguments give the same rows."""
    if usecase.generator is not None:
        module, function = usecase.generator.split(":")
        generate = cast(Generator, getattr(importlib.import_module(module), function))
        return generate(n, seed=seed, scenario=scenario)
    snapshot = read_snapshot(project_dir / usecase.dataset.file)
    suite = read_suite(project_dir / usecase.raw_suite)
    return resample(snapshot, usecase, suite=suite, n=n, seed=seed, scenario=scenario)


def write_snapshot(
    path: Path, usecase: UseCase, project_dir: Path, *, n: int, seed: int, scenario: Scenario = Scenario()
) -> Path:
    """Write `synthesize(...)` to `path` once, atomically (an existing file is kept: same arguments, same bytes)."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    synthesize(usecase, project_dir, n=n, seed=seed, scenario=scenario).to_csv(partial, index=False)
    partial.replace(path)
    return path


def pattern(shift: Shift) -> Pattern:
    """A use case's demo shift as the resampler's pattern."""
    return Pattern(
        column=shift.column, value=shift.value, share=shift.share, strength=shift.strength, group=shift.group
    )


def demo_scenarios(usecase: UseCase) -> dict[str, Scenario]:
    """The demo's populations: `plain` (snapshots A and B, live traffic), `shortcut` (snapshot C), `campaign`."""
    if usecase.demo is None:
        raise ValueError(NO_DEMO.format(name=usecase.name))
    demo = usecase.demo
    plain = Scenario(independent=tuple(demo.independent), tilt=demo.mix, drift=1.0 if demo.mix else 0.0)
    return {
        "plain": plain,
        "shortcut": replace(plain, shortcut=pattern(demo.shortcut)),
        "campaign": replace(plain, campaign=pattern(demo.campaign)),
    }
