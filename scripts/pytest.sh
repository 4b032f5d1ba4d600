#!/usr/bin/env bash
# Run pytest from the project venv; "no tests collected" (exit 5) is a failure, not a pass.
set -uo pipefail
.venv/bin/python -m pytest "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$code"
