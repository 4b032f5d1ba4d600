"""`steward usecase draft|check|list`: bringing a decision problem's dataset into Steward as a use case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from flows.cli.common import _fail, console
from steward.errors import StewardError
from steward.settings import Settings


def usecase_draft(
    data: Path = typer.Option(..., "--data", help="The dataset: a CSV file (optionally .gz)."),
    label: str = typer.Option(..., "--label", help="The outcome column."),
    favourable: str = typer.Option(..., "--favourable", help="The label value the decision grants (approve)."),
    name: str | None = typer.Option(None, "--name", help="The use case's name (default: the file's stem)."),
    id_column: str | None = typer.Option(None, "--id", help="The column identifying a row (default: detected)."),
) -> None:
    """Propose usecases/NAME/ (usecase.yaml, a datasheet stub) and expectations/NAME.json from a dataset, for review."""
    import pandas as pd

    from tasks.data.draft import draft, write
    from tasks.data.features import read_snapshot

    project = Settings().project_dir
    name = name or data.name.split(".")[0].lower().replace("-", "_")
    try:
        if not data.is_file():
            raise StewardError(f"--data {data}: no such file")
        frame = read_snapshot(data)
        target = data.resolve()
        if not target.is_relative_to(project.resolve()):  # a use case reads its data from inside the project
            target = project / "data" / f"{name}{''.join(data.suffixes)}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data, target)
        relative = str(target.relative_to(project.resolve()) if target.is_absolute() else target)
        proposed = draft(
            frame,
            name=name,
            data_file=relative,
            label=label,
            favourable=favourable,
            id_column=id_column,
            source=str(data),
        )
        folder = write(proposed, project, source=str(data))
    except (StewardError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        _fail(exc)
        return
    console.print(
        f"drafted {folder} and expectations/{name}.json: review them and the datasheet, "
        f"then `steward usecase check {name}`"
    )


def usecase_check(name: str = typer.Argument(..., help="The use case (a folder under usecases/).")) -> None:
    """Load a use case and name every way it disagrees with its data and its raw suite."""

    from steward.usecase import UseCaseError, load_usecase
    from tasks.data.features import read_snapshot

    project = Settings().project_dir
    try:
        usecase = load_usecase(project, name)
        suite = json.loads((project / usecase.raw_suite).read_text())
        frame = read_snapshot(project / usecase.dataset.file)
        problems = usecase.check_against(columns=list(frame.columns), suite=suite, data=frame)
        if problems:
            raise UseCaseError(f"use case {name!r} does not match its data or suite:\n" + "\n".join(problems))
    except (StewardError, OSError, ValueError) as exc:
        _fail(exc)
        return
    console.print(f"{name}: {len(frame)} rows match the use case and its suite")


def usecase_list() -> None:
    """The use cases under usecases/."""
    from steward.usecase import shipped

    for name in shipped(Settings().project_dir):
        console.print(name)
