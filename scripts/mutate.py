r"""`make mutate`: mutation testing of the decision-critical modules, and its report.

Runs mutmut (configured in pyproject.toml `[tool.mutmut]`: which modules, which tests), then writes
reports/mutation.md: per module the mutants generated, killed, survived, judged equivalent and untested,
and every survivor with its diff. A survivor is either killed by a test or listed in
tests/mutation/<module>.toml with the reason its behaviour cannot change; an entry there names the
mutant and the changed lines it was judged on, so a mutant whose code moved is shown again, not excused:

    ["tasks.audit.gate.x_decide__mutmut_7"]
    change = "- found: list[Check] = []\n+ found: list[Check] = None"
    why = "..."


Exits 1 when fewer than GOAL of the non-equivalent mutants are killed, or a survivor is unexplained.

    python scripts/mutate.py            # a full mutmut run from a clean mutants/, then the report
    python scripts/mutate.py --report   # report on the last run only

Every run starts from a clean mutants/: mutmut re-tests a mutant when its function changes, not when a
test does, so an incremental run would keep reporting mutants a new test has since killed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "tests/mutation"  # one <module>.toml per mutated module
REPORT = ROOT / "reports/mutation.md"
GOAL = 0.90
KILLED = {"killed", "timeout", "caught by type check"}


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    status: str
    diff: str

    @property
    def change(self) -> str:
        """The diff's changed lines, without the headers: what a reason in tests/mutation/ is judged on."""
        lines = self.diff.splitlines()
        return "\n".join(
            line.strip()
            for line in lines
            if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()
        )


def _mutants() -> list[Mutant]:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    found: list[Mutant] = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        module = str(path)
        for name, code in sorted(data.exit_code_by_key.items()):
            status = status_by_exit_code[code]
            diff = "" if status in KILLED else get_diff_for_mutant(name, path=path)
            found.append(Mutant(name, module, status, diff))
    return found


def _equivalents() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for path in sorted(EQUIVALENT.glob("*.toml")):
        found.update(tomllib.loads(path.read_text()))
    return found


def report(mutants: list[Mutant]) -> tuple[str, bool]:
    """The markdown report, and whether the goal is met."""
    reasons = _equivalents()
    explained: dict[str, str] = {}
    stale: list[str] = []
    for name, entry in reasons.items():
        mutant = next((m for m in mutants if m.name == name), None)
        if mutant is None or mutant.status in KILLED:
            stale.append(f"{name}: {'killed now' if mutant else 'no such mutant any more'}")
        elif mutant.change != entry["change"].strip():
            stale.append(f"{name}: its code changed since it was judged equivalent")
        else:
            explained[name] = entry["why"]
    rows = []
    totals: Counter[str] = Counter()
    for module in sorted({m.module for m in mutants}):
        mine = [m for m in mutants if m.module == module]
        count = Counter(
            "equivalent" if m.name in explained else "killed" if m.status in KILLED else m.status for m in mine
        )
        count["total"] = len(mine)
        totals.update(count)
        rows.append((module, count))
    rows.append(("**all**", totals))
    lines = [
        "# Mutation testing of the decision-critical modules",
        "",
        "Written by `make mutate` (scripts/mutate.py, mutmut; configuration in pyproject.toml `[tool.mutmut]`).",
        "Score: killed / (mutants - equivalent). A survivor is killed by a test or judged equivalent in",
        "tests/mutation/<module>.toml, with the reason its behaviour cannot change.",
        "",
        "| module | mutants | killed | survived | equivalent | no tests | score |",
        "|---|---|---|---|---|---|---|",
    ]
    ok = True
    for module, c in rows:
        judged = c["total"] - c["equivalent"]
        score = c["killed"] / judged if judged else 1.0
        ok = ok and (score >= GOAL or module != "**all**")
        lines.append(
            f"| {module} | {c['total']} | {c['killed']} | {c['survived']} | {c['equivalent']} | "
            f"{c['no tests']} | {score:.1%} |"
        )
    unexplained = [m for m in mutants if m.status not in KILLED and m.name not in explained]
    ok = ok and not unexplained and not stale
    killed_share = totals["killed"] / totals["total"] if totals["total"] else 1.0
    lines += [
        "",
        f"Killed {totals['killed']} of all {totals['total']} mutants ({killed_share:.1%}), equivalents included.",
        f"Goal: at least {GOAL:.0%} killed, every survivor explained: **{'met' if ok else 'NOT met'}**.",
    ]
    if unexplained:
        lines += ["", f"## Survivors without a reason ({len(unexplained)})", ""]
        for m in unexplained:
            lines += [f"### {m.name} ({m.status})", "", "```diff", m.diff, "```", ""]
    if stale:
        lines += ["", "## Stale entries in tests/mutation/", "", *[f"- {s}" for s in stale]]
    if explained:
        lines += ["", f"## Equivalent mutants ({len(explained)})", ""]
        for m in mutants:
            if m.name in explained:
                change = [f"  {line}" for line in m.change.splitlines()]
                lines += [f"- `{m.name}`: {explained[m.name]}", "", "  ```diff", *change, "  ```"]
    return "\n".join(lines).rstrip() + "\n", ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="report on the last run, do not run mutmut")
    parser.add_argument("mutants", nargs="*", help="mutant name patterns to run (default: all)")
    args = parser.parse_args()
    if not args.report:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        mutmut = Path(sys.executable).with_name("mutmut")
        code = subprocess.call([str(mutmut), "run", *args.mutants], cwd=ROOT)
        if code not in (0, 1):
            print(f"mutmut run exited {code}", file=sys.stderr)
            return code
    os.chdir(ROOT)  # mutmut reads its configuration and mutants/ from the project root
    text, ok = report(_mutants())
    REPORT.write_text(text)
    print("\n".join(line for line in text.split("\n## ")[0].splitlines() if line.startswith(("|", "Killed"))))
    print(f"report: {REPORT.relative_to(ROOT)} (goal {'met' if ok else 'NOT met'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
