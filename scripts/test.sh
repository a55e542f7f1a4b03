#!/usr/bin/env bash
# The test command (README, `make test`, .ci/run): pytest in the project's environment.
#   bash scripts/test.sh                 # everything (real-data tests skip, with the reason, when the data is absent)
#   bash scripts/test.sh -k synthetic    # any pytest arguments
# pytest exits 5 when it collects no test: with a selection (-k, a path) that is reported and not an
# error; for the full suite it is one (an import error or a broken config would look like "no tests").
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/python" -m pytest -q --durations=25 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  if [ "$#" -gt 0 ]; then
    echo "pytest collected no tests for: $*" >&2
    exit 0
  fi
  echo "pytest collected no tests at all: the suite is broken" >&2
fi
exit "$rc"
