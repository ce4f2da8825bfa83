"""Runs bgdeploy's pyinfra deploy files for the CLI, after validating everything first.

``bgdeploy provision ENV`` and ``bgdeploy deploy ENV`` run exactly what an operator runs by
hand (``pyinfra -y inventories/ENV.py deploys/FILE.py --data ...``): one code path. Before
pyinfra connects to anything, the inventory is loaded and every host's settings are validated
(:func:`check_environment`), so a wrong value exits 2 and no host is touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgdeploy.core import settings as settings_mod
from bgdeploy.core import timing
from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.progress import RunObserver
from bgdeploy.core.settings import ROOT, Settings

ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")
DATA_KEY = re.compile(r"^[a-z_][a-z0-9_]{0,63}\Z")


def inventory_path(env: str) -> Path:
    """``inventories/ENV.py``; a clear error for a name that is not an inventory."""
    if not ENV_NAME.match(env or ""):
        raise ConfigError(f"environment {env!r} is not a valid name (lower-case letters, digits)")
    path = ROOT / "inventories" / f"{env}.py"
    if not path.is_file():
        known = sorted(p.stem for p in (ROOT / "inventories").glob("*.py"))
        raise ConfigError(f"unknown environment {env!r}: no {path.relative_to(ROOT)} "
                          f"(known: {', '.join(known)})")  # fmt: skip
    return path


def load_inventory(env: str, override_data: dict[str, Any] | None = None) -> Any:
    """The inventory of ``inventories/ENV.py`` with its group_data (no connection), read as
    pyinfra reads it (:mod:`bgdeploy.fleet.inventory`; by pyinfra itself when that does not
    cover it): iterating it gives the hosts (``name``, ``groups``, ``data.dict()``),
    ``get_group(name, default)`` a group's. Inside :func:`one_reading`, read once."""
    key = (env, json.dumps(override_data or {}, sort_keys=True, default=repr))
    with _READING_LOCK:
        if _readings is not None and key in _readings:
            return _readings[key]
        with timing.phase("inventory"):
            found = _load_inventory(env, override_data)
        if _readings is not None:
            _readings[key] = found
        return found


_READING_LOCK = threading.RLock()
_readings: dict[tuple[str, str], Any] | None = None


@contextmanager
def one_reading() -> Iterator[None]:
    """Within this block (a command of the command line), each inventory is read once: every
    :func:`load_inventory` of the same environment (and data) gets that reading, on any
    thread. Outside it, each call reads the files again."""
    global _readings
    with _READING_LOCK:
        outer = _readings
        if outer is None:
            _readings = {}
    try:
        yield
    finally:
        if outer is None:
            with _READING_LOCK:
                _readings = None


def _load_inventory(env: str, override_data: dict[str, Any] | None) -> Any:
    from bgdeploy.fleet import inventory

    path = inventory_path(env)
    try:
        if inventory.covers(path, ROOT):
            try:
                return inventory.load(path, ROOT, override_data)
            except inventory.NotCovered:
                pass
        return load_with_pyinfra(path, override_data)
    except ConfigError:
        raise
    except Exception as error:
        # pyinfra_cli wraps what the file raised (its wrapper has no message of its own: str()
        # of it raises); a ConfigError of ours (a sandbox that is not up) is said as it is.
        cause = getattr(error, "exception", None)
        if isinstance(cause, ConfigError):
            raise ConfigError(str(cause)) from None
        why = cause if isinstance(cause, BaseException) else error
        raise ConfigError(
            f"{path.relative_to(ROOT)} could not be loaded: {type(why).__name__}: {why}"
        ) from None


def load_with_pyinfra(
    path: Path, override_data: dict[str, Any] | None = None, cwd: Path = ROOT
) -> Any:
    """pyinfra's own reading of an inventory file (``cwd``: where its ``group_data`` is): for
    an inventory :mod:`bgdeploy.fleet.inventory` does not cover. What a file raised is
    wrapped by pyinfra (its ``exception``)."""
    from pyinfra.api import Config, State
    from pyinfra.context import ctx_config, ctx_state

    make_inventory_from_files = _inventory_loader()
    # pyinfra executes inventory files within a state; a throwaway one connects nothing.
    with ctx_state.use(State()), ctx_config.use(Config()):
        return make_inventory_from_files(str(path), override_data=override_data or {}, cwd=str(cwd))


def _inventory_loader() -> Any:
    """pyinfra's own inventory loader, so hosts and group_data merge exactly as pyinfra does.

    Importing ``pyinfra_cli`` monkey-patches the whole standard library for gevent, which this
    process (threads, Fabric, httpx) must not get: the patch is suppressed for that import only.
    Loading an inventory executes files; it needs no patched sockets.
    """
    import gevent.monkey

    patch_all = gevent.monkey.patch_all
    gevent.monkey.patch_all = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        from pyinfra_cli.inventory import make_inventory_from_files
    finally:
        gevent.monkey.patch_all = patch_all
    return make_inventory_from_files


def host_settings(host: Any, env: str) -> Settings:
    """The validated settings of one inventory host."""
    return settings_mod.from_data(host.data.dict(), env)


def env_of_host(host: Any) -> str:
    """The environment a host belongs to: the inventory file's group (pyinfra adds it)."""
    inventories = {p.stem for p in (ROOT / "inventories").glob("*.py")}
    for group in host.groups:
        if group in inventories:
            return group
    raise ConfigError(f"host {host.name} is in no inventory group ({', '.join(inventories)})")


@dataclass
class Environment:
    """An environment, checked: its hosts by group and each host's settings."""

    name: str
    inventory: Any
    settings: dict[str, Settings]
    groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def web(self) -> list[str]:
        return self.groups.get("web", [])

    @property
    def db(self) -> list[str]:
        return self.groups.get("db", [])

    @property
    def migrate_host(self) -> str:
        """The web host that runs the app's one-off database commands (``migrate``,
        ``migrate:status``, ``migrate:fresh``): ``migrate_host`` in group_data, else the first
        web host. A name that is not a web host is a :class:`ConfigError`."""
        host = self.settings[self.web[0]].migrate_host or self.web[0]
        if host not in self.web:
            raise ConfigError(f"migrate_host {host!r} is not a web host of {self.name}")
        return host


def check_environment(env: str, override_data: dict[str, Any] | None = None) -> Environment:
    """Load an inventory and validate every host's settings; nothing connects."""
    inventory = load_inventory(env, override_data)
    with timing.phase("settings"):
        per_host = {host.name: host_settings(host, env) for host in inventory}
    groups = {
        group: [host.name for host in inventory.get_group(group, [])] for group in ("web", "db")
    }
    if not groups["web"]:
        raise ConfigError(f"inventories/{env}.py has no host in the group 'web'")
    return Environment(env, inventory, per_host, groups)


def data_args(data: dict[str, Any]) -> list[str]:
    """``--data`` arguments; values are JSON so pyinfra does not turn "0123" into 123."""
    args: list[str] = []
    for key, value in data.items():
        if not DATA_KEY.match(key):
            raise ConfigError(f"--data key {key!r} is not valid")
        args += ["--data", f"{key}={json.dumps(value)}"]
    return args


@dataclass
class DeployRun:
    """What a pyinfra run did: exit code, per-operation results and failed hosts."""

    returncode: int
    results: dict[str, Any]
    stderr: str = ""

    @property
    def failed_hosts(self) -> list[str]:
        return list(self.results.get("failed_hosts", []))

    def changed_hosts(self) -> set[str]:
        """Hosts on which at least one operation changed something."""
        changed: set[str] = set()
        for op in self.results.get("operations", []):
            changed.update(op.get("success", []))
        return changed


def run_deploy(
    env: str,
    deploy_file: str,
    data: dict[str, Any] | None = None,
    limit: list[str] | None = None,
    stream: bool = True,
    checked: bool = False,
    observer: RunObserver | None = None,
) -> DeployRun:
    """Run ``pyinfra -y --json inventories/ENV.py deploys/FILE`` from the repository root.

    pyinfra's log (stderr) goes to ``observer.log`` line by line as it comes, and the run's
    events (:mod:`bgdeploy.fleet.events`) to ``observer.event``; without an observer the log
    is copied to stderr when ``stream`` is set. The JSON results (stdout) are parsed. The
    inventory and settings are validated first, unless ``checked`` (the caller just did:
    :func:`bgdeploy.strategies.deploying.check_request`).
    """
    from bgdeploy.fleet import events

    if not checked:
        check_environment(env, data)
    args = [sys.executable, "-m", "pyinfra", "-y", "--json", str(inventory_path(env)), deploy_file]
    args += data_args(data or {})
    for item in limit or []:
        args += ["--limit", item]
    with tempfile.TemporaryDirectory(prefix="bgdeploy-events-") as tmp:
        events_path = Path(tmp) / "events.jsonl"
        events_path.touch()
        env_vars = {**os.environ, "PYINFRA_PROGRESS": "off"}
        if observer is not None:
            env_vars[events.EVENTS_VARIABLE] = str(events_path)
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env_vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        tail = EventTail(events_path, observer) if observer is not None else None
        try:
            code, stdout, captured = _follow(proc, observer, stream)
        finally:
            if tail is not None:
                tail.stop()
    try:
        parsed = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError:
        raise OperationFailed(f"pyinfra printed no JSON result (exit {code})") from None
    return DeployRun(code, parsed.get("results", {}), "".join(captured))


def _follow(
    proc: subprocess.Popen[str], observer: RunObserver | None, stream: bool
) -> tuple[int, str, list[str]]:
    """Read pyinfra's stderr line by line (to the observer or our stderr) until it ends;
    its exit code, stdout and stderr lines. Ctrl-C here stops pyinfra first."""
    captured: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    # stdout (the JSON) is read on its own thread: reading it only after stderr would deadlock
    # once the JSON outgrows the pipe buffer (64 KiB: a larger fleet).
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        for line in proc.stderr:
            captured.append(line)
            if observer is not None:
                observer.log(line.rstrip("\n"))
            elif stream:
                sys.stderr.write(line)
        code = proc.wait()
        reader.join()
    except BaseException:
        # Ctrl-C (or any error) here: pyinfra must not go on changing hosts behind our back.
        stop_process(proc)
        raise
    return code, out[0] if out else "", captured


class EventTail:
    """Reads the events file as pyinfra appends to it, on a thread of its own, and hands
    each event to the observer; :meth:`stop` reads what is left first."""

    def __init__(self, path: Path, observer: RunObserver, interval: float = 0.1) -> None:
        self.path, self.observer, self.interval = path, observer, interval
        self.done = threading.Event()
        self.offset = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            self._read()

    def _read(self) -> None:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for raw in complete.splitlines():
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.observer.event(event)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self._read()


def stop_process(proc: subprocess.Popen[str], grace: float = 5.0) -> None:
    """Stop a pyinfra run: SIGINT, then SIGTERM, then SIGKILL, ``grace`` seconds apart.

    When pyinfra's process ends its SSH connections close, and commands still running on the
    hosts under a terminal (the release's build steps) get SIGHUP.
    """
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue


def current_settings() -> Settings:
    """The settings of the host a deploy file is running for (pyinfra's ``host``).

    Deploy files call this first: a wrong value stops the run before any operation is added.
    It also reports the run's operations to ``bgdeploy`` when it asked for them
    (:mod:`bgdeploy.fleet.events`).
    """
    from pyinfra import host
    from pyinfra.context import ctx_state

    from bgdeploy.fleet import events

    events.attach(ctx_state.get())
    return host_settings(host, env_of_host(host))
