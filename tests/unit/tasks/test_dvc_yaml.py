"""dvc.yaml's stage order is the order the flow runs them in: it must respect every dependency."""

import ast
import functools
from pathlib import Path

import yaml

from tasks.dvc import pipeline_stages

PROJECT = Path(__file__).resolve().parents[3]


def test_stage_order_respects_the_dag():
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    produced_by = {}
    for name, stage in stages.items():
        for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            produced_by[path] = name
    order = pipeline_stages(PROJECT)
    assert order[0] == "validate"
    for name, stage in stages.items():
        for dep in stage.get("deps", []):
            if dep in produced_by:
                assert order.index(produced_by[dep]) < order.index(name), f"{name} runs before {produced_by[dep]}"


def test_every_stage_runs_its_own_module_in_its_phase_package():
    for name, stage in yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"].items():
        prefix, module = stage["cmd"].rsplit(" ", 1)
        assert prefix == "python -m"
        top, phase, stage_module = module.split(".")
        assert (top, stage_module) == ("tasks", name), f"stage {name} runs {module}"
        assert f"tasks/{phase}/{name}.py" in stage["deps"]
        assert (PROJECT / "tasks" / phase / "__init__.py").is_file()


PACKAGES = ("steward", "tasks", "deployments", "flows")


def _module_file(name: str) -> Path | None:
    for path in (PROJECT / f"{name.replace('.', '/')}.py", PROJECT / name.replace(".", "/") / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.cache
def _imported(path: Path) -> frozenset[str]:
    """Every project module `path` imports, at its top or inside a function (a stage imports lazily)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] in PACKAGES:
            # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            found.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return frozenset(found)


def import_closure(module: str) -> set[str]:
    """The project files a `python -m <module>` process may run: the module and everything it imports."""
    files: set[str] = set()
    todo = [module, *(".".join(module.split(".")[: i + 1]) for i in range(module.count(".")))]
    while todo:
        path = _module_file(todo.pop())
        if path is None or (relative := str(path.relative_to(PROJECT))) in files:
            continue
        files.add(relative)
        todo.extend(_imported(path))
    return files


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


def test_every_stage_depends_on_all_the_code_it_runs():
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    missing = {
        name: sorted(path for path in import_closure(stage["cmd"].split()[-1]) if not _covered(path, stage["deps"]))
        for name, stage in stages.items()
    }
    assert {name: paths for name, paths in missing.items() if paths} == {}


def test_no_stage_depends_on_code_it_does_not_run():
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    stale = {
        name: sorted(
            dep for dep in stage["deps"] if dep.endswith(".py") and dep not in import_closure(stage["cmd"].split()[-1])
        )
        for name, stage in stages.items()
    }
    assert {name: deps for name, deps in stale.items() if deps} == {}


def test_the_closure_follows_lazy_imports_and_package_inits():
    # mitigate imports the fairness audit inside a function; the gate stage imports the bootstrap's names
    closure = import_closure("tasks.audit.mitigate")
    assert {
        "tasks/audit/fairness.py",
        "tasks/audit/bootstrap.py",
        "tasks/audit/gate.py",
        "tasks/__init__.py",
    } <= closure
    assert "steward/__init__.py" in import_closure("tasks.audit.gate")
    assert "steward/registry.py" not in import_closure("tasks.audit.gate")  # the kernel's names load on first use
