"""The events of a pyinfra run, written for the operator's live view
(:mod:`bgdeploy.core.progress` says what each means).

``bgdeploy deploy`` and ``bgdeploy provision`` run pyinfra in a process of its own
(:func:`bgdeploy.fleet.runner.run_deploy`) and name a file in ``BGDEPLOY_EVENTS``; this module,
inside that process, appends one JSON object a line to it: pyinfra's operations as they start
and end on each host (:class:`Callbacks`, attached once per run by :func:`attach`), and the
release's own steps and stages (:func:`emit`, called by the release's operations). Without
the variable (a plain ``pyinfra`` run) nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import weakref
from pathlib import Path
from typing import Any, TextIO

from pyinfra.api.state import BaseStateCallback

EVENTS_VARIABLE = "BGDEPLOY_EVENTS"

_SINK: dict[str, TextIO] = {}
_ATTACHED: weakref.WeakSet[Any] = weakref.WeakSet()
_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def active() -> bool:
    """True inside a run whose events someone reads (``bgdeploy deploy``, not plain pyinfra)."""
    return bool(os.environ.get(EVENTS_VARIABLE))


def emit(kind: str, **fields: Any) -> None:
    """Append one event (``kind``, the time, ``fields``) to the run's events file, if any."""
    path = os.environ.get(EVENTS_VARIABLE)
    if not path:
        return
    sink = _SINK.get(path)
    if sink is None:
        sink = _SINK[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
    sink.write(json.dumps({"kind": kind, "t": round(time.time(), 3), **fields}) + "\n")
    sink.flush()


def _op_name(state: Any, op_hash: str) -> str:
    names = state.get_op_meta(op_hash).names
    return ", ".join(sorted(names)) if names else op_hash


class Callbacks(BaseStateCallback):
    """pyinfra's callbacks, turned into events."""

    def __init__(self) -> None:
        self.planned = False

    def operation_start(self, state: Any, op_hash: str) -> None:  # type: ignore[override]
        if not self.planned:
            self.planned = True
            active = set(state.inventory.iter_activated_hosts())
            hosts = {  # in inventory order
                host.name: len(host.op_hash_order) for host in state.inventory if host in active
            }
            emit("plan", hosts=hosts)
        emit("op_start", name=_op_name(state, op_hash))

    def operation_host_start(self, state: Any, host: Any, op_hash: str) -> None:  # type: ignore[override]
        emit("op_host_start", host=host.name, name=_op_name(state, op_hash))

    def operation_host_success(  # type: ignore[override]
        self, state: Any, host: Any, op_hash: str, retry_count: int = 0
    ) -> None:
        emit("op_host_end", host=host.name, name=_op_name(state, op_hash), ok=True)

    def operation_host_error(  # type: ignore[override]
        self, state: Any, host: Any, op_hash: str, retry_count: int = 0, max_retries: int = 0
    ) -> None:
        emit("op_host_end", host=host.name, name=_op_name(state, op_hash), ok=False)

    def host_connect_error(self, state: Any, host: Any, error: Any) -> None:  # type: ignore[override]
        emit("host_error", host=host.name, message=str(error))


class OwnLines(logging.Handler):
    """What bgdeploy's own code logs through pyinfra's logger (a canary's gate and its
    values, a failed step, a restore), as ``say`` events: the operator sees these lines
    without ``--verbose`` (pyinfra's own lines are only in the log file then)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not record.pathname.startswith(_PACKAGE) or record.levelno < logging.INFO:
            return
        text = _ANSI.sub("", record.getMessage()).strip()
        emit("say", level=record.levelname.lower(), text=text)


def attach(state: Any) -> None:
    """Report this pyinfra ``State``'s operations as events, and bgdeploy's own log lines
    (once per state; nothing without ``BGDEPLOY_EVENTS``)."""
    if not os.environ.get(EVENTS_VARIABLE) or state in _ATTACHED:
        return
    if not _ATTACHED:
        logging.getLogger("pyinfra").addHandler(OwnLines())
    _ATTACHED.add(state)
    state.add_callback_handler(Callbacks())
