#!/usr/bin/env bash
# One command that sets tabxfer up on a fresh machine: a virtual environment in .venv with the
# project installed (editable) and its test/dev extras.
#
#   bash scripts/setup.sh            # CPU torch (CI, laptops)
#   TORCH_SPEC=torch bash scripts/setup.sh   # let pip pick a CUDA build (GPU machines; ~5 GB)
#
# torch is installed first, pinned, so that resolving the other packages does not pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-dev}

quiet_pip() {
  # pip's "Location ... is ignored" notes are harmless (find-links folders that do not apply); keep the rest.
  "$VENV/bin/python" -m pip "$@" 2>&1 | grep -v -E "Location .* is ignored" || return "${PIPESTATUS[0]}"
}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
quiet_pip install --quiet --upgrade pip
quiet_pip install --quiet "$TORCH_SPEC"
quiet_pip install --quiet -e ".[$EXTRAS]"
"$VENV/bin/python" -c "import tabxfer, torch, polars; print(f'tabxfer {tabxfer.__version__} | torch {torch.__version__} | polars {polars.__version__}')"
