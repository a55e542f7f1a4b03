"""Keeping credentials out of everything a run writes.

Two kinds of secret reach a tabxfer process: passwords inside URLs (an Optuna storage such as
``postgresql://user:PASSWORD@host/db``, given in a config or on the command line) and values of
environment variables named like credentials (``WANDB_API_KEY``, ``*_TOKEN``, ``*_SECRET``,
``*_PASSWORD``, ...). Neither may be written to a log, a config saved with a run, a model card or an
artifact. :func:`protect_run` does what it takes at the start of every run:

* masks them in ``sys.argv`` (W&B records the command line in its run metadata; Hydra has parsed it
  already, and a sweep keeps its own copy to start its workers);
* adds a filter to the logging handlers that masks them in every record;
* rewrites the files Hydra saved before the run started (``.hydra/*.yaml``: the overrides and the
  ``hydra`` node, which holds the sweeper's storage URL) with them masked.

A sweep's trials are saved by Hydra before they run, so the rewrite alone would leave a window (a worker
killed between the save and the run's start). The sweeper closes it for its storage URL: it masks the
password in the config every trial's config is composed from (:func:`tabxfer.sweep.sweeper.mask_storage`),
so no trial's ``.hydra/hydra.yaml`` ever holds it. A secret in a *task* override of a sweep (a URL in
``tags``, say) is a value the trial needs, so its saved config holds it until the run starts and masks it.

The run's own record of its config (checkpoint ``meta``, hence W&B config, model card and ONNX metadata)
goes through :func:`redact_obj`.

The safest habit is still to keep secrets out of the command line: ``hydra.sweeper.storage`` accepts
``${oc.env:TABXFER_SWEEP_STORAGE}``, and saved configs then hold only that interpolation.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tabxfer.io import write_text_atomic

MASK = "***"
SECRET_NAME = re.compile(r"(?i)(api_?key|token|secret|passw(or)?d|credential)")
URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][\w+.-]*://[^\s:/@'\"]+:)(?P<pw>[^\s@/'\"]+)(?P<at>@)")
MIN_SECRET_LEN = 8  # shorter values ("true", "1") are flags, and masking them would garble logs


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables named like credentials, longest first."""
    env = os.environ if env is None else env
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with URL passwords and the ``secrets`` (default: :func:`secret_values`) masked.

    >>> redact("storage=postgresql+psycopg://tabxfer:hunter22@db:5432/optuna", secrets=[])
    'storage=postgresql+psycopg://tabxfer:***@db:5432/optuna'
    >>> redact("key is 0123456789abcdef", secrets=["0123456789abcdef"])
    'key is ***'
    """
    out = URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    for s in secret_values() if secrets is None else secrets:
        out = out.replace(s, MASK)
    return out


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like object (dicts, lists, strings) with secrets masked in every string."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, Mapping):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj


class RedactingFilter(logging.Filter):
    """Masks secrets in every log record that passes through the handler it is attached to (the
    credential variables are read once, when the filter is made)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets = secret_values()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def protect_logs(logger: logging.Logger | None = None) -> None:
    """Attach a :class:`RedactingFilter` to every handler of ``logger`` (default: root), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def protect_argv() -> None:
    sys.argv[:] = [redact(a) for a in sys.argv]


def scrub_file(path: Path) -> bool:
    """Rewrite a text file with its secrets masked (atomically); ``True`` when it changed."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    masked = redact(text)
    if masked == text:
        return False
    write_text_atomic(path, masked)
    return True


def protect_run(output_dir: str | os.PathLike[str]) -> list[Path]:
    """All of the above for a run writing into ``output_dir``; returns the files that were rewritten."""
    protect_argv()
    protect_logs()
    saved = Path(output_dir) / ".hydra"
    return [p for p in sorted(saved.glob("*.yaml")) if scrub_file(p)] if saved.is_dir() else []
