"""The reliability suite: injected faults (SIGKILL, disk full, read-only folders, NaN), malformed and
fuzzed input, untrusted files. Every test here is marked ``reliability`` (run it alone with
``bash scripts/test.sh -m reliability``); CI runs it with the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)
