"""The SQLAlchemy engine for Steward's own tables (registry now; ledger and logs later)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import DeclarativeBase

from steward.errors import SchemaError

OLD_SCHEMA = (
    "the database {url} was created by an older Steward: {problems}. Steward does not migrate its tables; "
    "use a fresh STEWARD_HOME (or STEWARD_DATABASE_URL), or move the old database aside"
)


class Base(DeclarativeBase):
    """Declarative base of every Steward table."""


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer (service + flows)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")  # erased personal data is overwritten, not left in free pages
    cursor.close()


def _import_tables() -> None:
    """Every module that declares a table, so that create_all makes them all whatever the caller imported."""
    import steward.leases
    import steward.ledger
    import steward.model_integrity
    import steward.personal
    import steward.predictions
    import steward.registry
    import steward.reviews
    import steward.routing  # noqa: F401


def make_engine(url: str) -> Engine:
    """An engine for `url` with Steward's tables created; SQLite files get WAL mode and a busy timeout."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _import_tables()
    Base.metadata.create_all(engine)
    check_schema(engine)
    add_indexes(engine)
    return engine


def add_indexes(engine: Engine) -> None:
    """Create the indexes Steward's tables declare that an existing database lacks (`create_all` makes them
    only with a new table). Indexes change no data and no result, only how fast a read is: adding one is not a
    migration, and a database made before them reads through them from its next start."""
    existing = inspect(engine)
    for table in Base.metadata.sorted_tables:
        found = {index["name"] for index in existing.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in found:
                index.create(engine)


def check_schema(engine: Engine) -> None:
    """Refuse a database whose existing tables lack columns Steward's tables have now (`create_all` adds
    missing tables, never missing columns), naming each, rather than failing later on the first query."""
    existing = inspect(engine)
    problems = []
    for table in Base.metadata.sorted_tables:
        found = {c["name"] for c in existing.get_columns(table.name)}
        if missing := [c.name for c in table.columns if c.name not in found]:
            problems.append(f"table {table.name} lacks {', '.join(missing)}")
    if problems:
        raise SchemaError(
            OLD_SCHEMA.format(url=engine.url.render_as_string(hide_password=True), problems="; ".join(problems))
        )
