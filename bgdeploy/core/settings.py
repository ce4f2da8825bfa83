"""One typed, validated settings object, read from pyinfra's group_data.

Settings live in ``group_data/*.py`` (``all.py`` holds the defaults; ``prod.py``,
``staging.py``, ``sandbox.py``, ``web.py``, ``db.py`` override them) and ``--data key=value``.
pyinfra merges them per host; :func:`from_data` turns one host's merged data into
:class:`Settings` and fails on the first wrong or missing value, naming the key and the file it
comes from, before any host is touched. A key that bgdeploy does not know (a typo such as
``helth_deadline``) is an error too, with the closest known key suggested.

Secrets never sit in group_data: they come from the environment (:func:`secrets_from_env`,
:mod:`bgdeploy.core.secrets`).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bgdeploy.core.approvals import ApprovalPolicy
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.secrets import SECRET_VARIABLES as SECRET_VARIABLES
from bgdeploy.core.secrets import secrets_from_env as secrets_from_env
from bgdeploy.core.windows import WindowPolicy


def find_root(environ: Mapping[str, str] | None = None) -> Path:
    """The repository bgdeploy works in: its ``inventories/``, ``group_data/``, ``templates/``.

    ``BGDEPLOY_ROOT`` when set; else the checkout this package sits in (an editable install,
    the tests); else the current directory: ``pip install .`` puts the package in
    site-packages, and the operator runs ``bgdeploy`` from the repository's root, as pyinfra.
    """
    env = os.environ if environ is None else environ
    if env.get("BGDEPLOY_ROOT"):
        return Path(env["BGDEPLOY_ROOT"]).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "inventories").is_dir():
        return checkout
    return Path.cwd()


ROOT = find_root()
GROUP_DATA_DIR = ROOT / "group_data"


def state_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where bgdeploy keeps its files on the operator's machine (sandboxes, the cache clones
    of ``code_delivery = "push"``): ``$BGDEPLOY_STATE_DIR`` or ``~/.local/state/bgdeploy``."""
    env = os.environ if environ is None else environ
    root = env.get("BGDEPLOY_STATE_DIR")
    return Path(root) if root else Path.home() / ".local" / "state" / "bgdeploy"


# bgdeploy's own files on each web host, under ``app_root`` (DESIGN.md "On each server").
STATE_DIR = ".bgdeploy"
JOURNAL_FILE = "journal.jsonl"
LOCK_FILE = "lock"

# Keys that are not settings but may sit in the same data: pyinfra's own (ssh_*, _sudo, ...)
# and what an inventory says of each host.
# http_port and preview_http_port: where the operator reaches a host's listeners when they
# differ from public_port/preview_port (the sandbox publishes them on 127.0.0.1).
HOST_KEYS = frozenset({"private_ip", "http_port", "preview_http_port", "sandbox"})
POLICY_KEYS = frozenset({"deploy_windows", "blackouts", "timezone"})

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")
_PATH = re.compile(r"^/[A-Za-z0-9_./-]*\Z")
_VERSION = re.compile(r"^\d+\.\d+\Z")
_DIR = re.compile(r"^[A-Za-z0-9_./~-]{1,255}\Z")
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9_./-]*)?\Z")


@dataclass(frozen=True)
class Settings:
    """Everything bgdeploy needs to know about an environment (one host's view of it)."""

    env: str
    production: bool
    app_name: str
    app_root: str
    repository: str
    ref: str
    php_version: str
    deploy_user: str
    php_fpm_user: str
    server_name: str
    public_port: int
    preview_port: int
    preview_allow: tuple[str, ...]
    health_path: str
    health_deadline: float
    health_interval: float
    migrate_host: str | None
    backups_dir: str
    snapshot_keep: int
    min_free_disk_mb: int
    auto_rollback: bool
    rolling_batch: int | None
    monitor_window: float
    db_name: str
    db_user: str
    db_port: int
    redis_port: int
    queue_workers: int
    fpm_max_children: int
    process_control_timeout: int
    window: WindowPolicy
    # Server setup (deploys/provision.py)
    php_fpm_group: str
    fpm_pm: str
    fpm_max_requests: int
    request_timeout: int
    client_max_body_mb: int
    app_url: str
    log_level: str
    log_retention_days: int
    postgres_version: str
    # Canary deploys (bgdeploy/strategies/canary.py): the metric gate's thresholds and window.
    canary_window: float = 300
    canary_max_error_rate: float = 0.01
    canary_max_p95_seconds: float = 0.5
    canary_max_5xx: float = 0
    canary_probe_rate: float = 2.0
    canary_interval: float = 30.0
    """Seconds between the gate's evaluations through the window (bgdeploy/checks/window.py)."""
    canary_failure_limit: int = 3
    """Evaluations in a row a check must fail before the window's end to send the canary back
    at once."""
    prometheus_url: str | None = None
    # The canary compared with the live colour over the same window (bgdeploy/checks/baseline.py).
    canary_baseline: bool = True
    canary_min_requests: int = 100
    canary_significance: float = 0.01
    canary_max_latency_increase: float = 0.2
    canary_latency_slack: float = 0.002
    # The canary's trends over the window (bgdeploy/checks/trends.py, Prometheus only).
    canary_max_queue_growth: float = 100
    canary_max_memory_increase: float = 0.5
    asset_paths: tuple[str, ...] = ("public/build",)
    """What ``npm run build`` writes, relative to a checkout. With several web hosts one host
    builds a release's assets and the others receive a verified copy; empty: every host runs
    ``npm ci`` and ``npm run build`` itself."""
    hooks: dict[str, list[str]] = field(default_factory=dict)
    """The operator's own executables per stage (:data:`HOOK_STAGES`), beside those in
    ``hooks/STAGE/`` of the deploy repository (:mod:`bgdeploy.oncall.hooks`)."""
    hook_timeout: float = 60.0
    """Seconds one hook may run before it is stopped (and counts as failed)."""
    run_log_dir: str | None = None
    """Where the operator's machine keeps each run's log (:mod:`bgdeploy.core.runlog`)."""
    # The automatic pipeline (bgdeploy ship, bgdeploy/strategies/ship.py).
    staging_environment: str | None = None
    """The environment ``bgdeploy ship`` deploys to and checks before this one (None: no
    staging stage)."""
    staging_checks: tuple[tuple[str, ...], ...] = ()
    """Commands run on the operator's machine against staging (an E2E suite): argv lists."""
    staging_check_timeout: float = 1800.0
    canary_percent: float = 5.0
    """The canary's share of clients for ``bgdeploy ship`` (runbook: 5 %)."""
    approvals: ApprovalPolicy | None = None
    """Who must have approved each kind of deploy (:mod:`bgdeploy.core.approvals`); None asks
    for no approval."""
    code_delivery: str = "fetch"
    """How a release's commit reaches the web hosts (:mod:`bgdeploy.fleet.delivery`):
    ``fetch``, each host fetches ``repository`` (it needs a credential, or
    ``ssh_forward_agent``); ``push``, the operator's machine fetches it, resolves the ref and
    sends each host the commit over SSH (the hosts need no credential)."""
    ssh_forward_agent: bool = False
    """Forward the operator's SSH agent to the hosts (pyinfra's ``ssh_forward_agent``, Fabric's
    ``forward_agent``): hosts that fetch can use the operator's key."""

    @property
    def php_fpm_service(self) -> str:
        """``php8.2-fpm``: the init script and systemd unit of ``php_version``'s php-fpm."""
        return f"php{self.php_version}-fpm"

    @property
    def php_fpm_pool_dir(self) -> str:
        """``/etc/php/8.2/fpm/pool.d``: where ``php_version``'s php-fpm reads its pools."""
        return f"/etc/php/{self.php_version}/fpm/pool.d"

    @property
    def journal_path(self) -> str:
        """``<app_root>/.bgdeploy/journal.jsonl``."""
        return posixpath.join(self.app_root, STATE_DIR, JOURNAL_FILE)

    @property
    def lock_path(self) -> str:
        """``<app_root>/.bgdeploy/lock``."""
        return posixpath.join(self.app_root, STATE_DIR, LOCK_FILE)

    @property
    def scale_path(self) -> str:
        """``<app_root>/.bgdeploy/scale``: what ``bgdeploy scale`` set on the host."""
        return posixpath.join(self.app_root, STATE_DIR, "scale")


SETTING_KEYS = frozenset(f.name for f in fields(Settings)) - {"env", "window"}


def locate(key: str, directory: Path = GROUP_DATA_DIR) -> str:
    """The group_data file that sets ``key`` (for error messages), or ``"group_data"``."""
    pattern = re.compile(rf"^{re.escape(key)}\s*[:=]", re.MULTILINE)
    found = [
        f"group_data/{path.name}"
        for path in sorted(directory.glob("*.py"))
        if pattern.search(path.read_text(errors="replace"))
    ]
    return ", ".join(found) if found else "group_data (or --data)"


class _Reader:
    """Reads typed values out of one host's data, naming key and file on every error."""

    def __init__(self, data: Mapping[str, Any], directory: Path) -> None:
        self.data = data
        self.directory = directory

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{locate(key, self.directory)}: {key} {problem}")

    def raw(self, key: str) -> Any:
        if key not in self.data or self.data[key] is None:
            raise self.fail(key, "is missing (set it in group_data/all.py or per environment)")
        return self.data[key]

    def text(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, f"has a value that is not allowed: {value!r}")
        return value

    def integer(self, key: str, low: int, high: int, optional: bool = False) -> int | None:
        if optional and self.data.get(key) is None:
            return None
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be a whole number from {low} to {high}, not {value!r}")
        return value

    def number(self, key: str, low: float, high: float) -> float:
        value = self.raw(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.fail(key, f"must be a number from {low} to {high}, not {value!r}")
        return float(value)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.raw(key)
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be True or False, not {value!r}")
        return value


def _check_unknown(data: Mapping[str, Any], directory: Path) -> None:
    known = SETTING_KEYS | HOST_KEYS | POLICY_KEYS
    for key in data:
        if key in known or key.startswith(("_", "ssh_", "bgdeploy_")) or key in _RUNTIME_KEYS:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{locate(key, directory)}: unknown setting {key!r}{hint}")


# Values the deploy files take through --data (validated where they are used).
_RUNTIME_KEYS = frozenset(
    {
        "force",
        "emergency_reason",
        "allow_destructive",
        "strategy",
        "canary",
        "reason",
        "colour",
        "deploy_kind",
        "severity",
        "approved_by",
        "rollback_plan",
    }
)


def from_data(data: Mapping[str, Any], env: str, directory: Path = GROUP_DATA_DIR) -> Settings:
    """Build and validate :class:`Settings` from one host's merged group_data."""
    _check_unknown(data, directory)
    read = _Reader(data, directory)
    preview_allow = read.raw("preview_allow")
    if not isinstance(preview_allow, list | tuple) or not preview_allow:
        raise read.fail(
            "preview_allow", f"must be a list of addresses or networks, not {preview_allow!r}"
        )
    for item in preview_allow:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise read.fail(
                "preview_allow", f"holds {item!r}, which is not an address or network"
            ) from None
    migrate_host = data.get("migrate_host")
    if migrate_host is not None and (
        not isinstance(migrate_host, str) or not _NAME.match(migrate_host)
    ):
        raise read.fail("migrate_host", f"must be an inventory host name, not {migrate_host!r}")
    health_path = read.text("health_path", re.compile(r"^/[A-Za-z0-9_./-]*\Z"))
    return Settings(
        env=env,
        production=read.boolean("production"),
        app_name=read.text("app_name", _NAME),
        app_root=read.text("app_root", _PATH),
        repository=read.text("repository", re.compile(r"^[A-Za-z0-9_@:/.+~-]+\Z")),
        ref=read.text("ref"),
        php_version=read.text("php_version", _VERSION),
        deploy_user=read.text("deploy_user", _NAME),
        php_fpm_user=read.text("php_fpm_user", _NAME),
        server_name=read.text("server_name", re.compile(r"^[A-Za-z0-9_.* -]+\Z")),
        public_port=read.integer("public_port", 1, 65535),  # type: ignore[arg-type]
        preview_port=read.integer("preview_port", 1, 65535),  # type: ignore[arg-type]
        preview_allow=tuple(str(item) for item in preview_allow),
        health_path=health_path,
        health_deadline=read.number("health_deadline", 1, 3600),
        health_interval=read.number("health_interval", 0.1, 60),
        migrate_host=migrate_host,
        backups_dir=read.text("backups_dir", _PATH),
        snapshot_keep=read.integer("snapshot_keep", 1, 1000),  # type: ignore[arg-type]
        min_free_disk_mb=read.integer("min_free_disk_mb", 0, 10_000_000),  # type: ignore[arg-type]
        auto_rollback=read.boolean("auto_rollback"),
        rolling_batch=read.integer("rolling_batch", 1, 10_000, optional=True),
        monitor_window=read.number("monitor_window", 0, 86_400),
        db_name=read.text("db_name", _NAME),
        db_user=read.text("db_user", _NAME),
        db_port=read.integer("db_port", 1, 65535),  # type: ignore[arg-type]
        redis_port=read.integer("redis_port", 1, 65535),  # type: ignore[arg-type]
        queue_workers=read.integer("queue_workers", 0, 64),  # type: ignore[arg-type]
        fpm_max_children=read.integer("fpm_max_children", 1, 1000),  # type: ignore[arg-type]
        process_control_timeout=read.integer("process_control_timeout", 1, 3600),  # type: ignore[arg-type]
        window=WindowPolicy.from_data(data, source=locate("deploy_windows", directory)),
        php_fpm_group=read.text("php_fpm_group", _NAME),
        fpm_pm=read.choice("fpm_pm", ("static", "dynamic", "ondemand")),
        fpm_max_requests=read.integer("fpm_max_requests", 0, 1_000_000),  # type: ignore[arg-type]
        request_timeout=read.integer("request_timeout", 1, 3600),  # type: ignore[arg-type]
        client_max_body_mb=read.integer("client_max_body_mb", 1, 10_240),  # type: ignore[arg-type]
        app_url=read.text("app_url", _URL),
        log_level=read.choice(
            "log_level", ("debug", "info", "notice", "warning", "error", "critical")
        ),
        log_retention_days=read.integer("log_retention_days", 1, 3650),  # type: ignore[arg-type]
        postgres_version=read.text("postgres_version", re.compile(r"^\d{1,2}\Z")),
        canary_window=read.number("canary_window", 1, 86_400),
        canary_max_error_rate=read.number("canary_max_error_rate", 0, 1),
        canary_max_p95_seconds=read.number("canary_max_p95_seconds", 0, 3600),
        canary_max_5xx=read.number("canary_max_5xx", 0, 1e12),
        canary_probe_rate=read.number("canary_probe_rate", 0.1, 1000),
        canary_interval=(
            read.number("canary_interval", 1, 86_400) if "canary_interval" in data else 30.0
        ),
        canary_failure_limit=(
            read.integer("canary_failure_limit", 1, 1000)  # type: ignore[arg-type]
            if "canary_failure_limit" in data
            else 3
        ),
        prometheus_url=_prometheus_url(data, directory),
        canary_baseline=read.boolean("canary_baseline"),
        canary_min_requests=read.integer("canary_min_requests", 1, 1_000_000_000),  # type: ignore[arg-type]
        canary_significance=read.number("canary_significance", 1e-9, 0.5),
        canary_max_latency_increase=read.number("canary_max_latency_increase", 0, 100),
        canary_latency_slack=read.number("canary_latency_slack", 0, 3600),
        canary_max_queue_growth=read.number("canary_max_queue_growth", 0, 1e12),
        canary_max_memory_increase=read.number("canary_max_memory_increase", 0, 100),
        asset_paths=_asset_paths(read),
        hooks=_hooks(read),
        hook_timeout=read.number("hook_timeout", 1, 3600) if "hook_timeout" in data else 60.0,
        run_log_dir=None if data.get("run_log_dir") is None else read.text("run_log_dir", _DIR),
        staging_environment=_staging_environment(read),
        staging_checks=_staging_checks(read),
        staging_check_timeout=(
            read.number("staging_check_timeout", 1, 86_400)
            if "staging_check_timeout" in data
            else 1800.0
        ),
        canary_percent=read.number("canary_percent", 0.1, 100) if "canary_percent" in data else 5.0,
        approvals=ApprovalPolicy.from_data(data.get("approvals"), locate("approvals", directory)),
        code_delivery=(
            read.choice("code_delivery", CODE_DELIVERIES) if "code_delivery" in data else "fetch"
        ),
        ssh_forward_agent=(
            read.boolean("ssh_forward_agent") if "ssh_forward_agent" in data else False
        ),
    )


CODE_DELIVERIES = ("fetch", "push")
"""The values of ``code_delivery`` (:mod:`bgdeploy.fleet.delivery`)."""


HOOK_STAGES = ("pre-deploy", "post-deploy", "post-switch", "post-rollback", "on-failure")
"""Where an operator's hook can run (:mod:`bgdeploy.oncall.hooks`)."""


def _hooks(read: _Reader) -> dict[str, list[str]]:
    """``hooks``: a dict of stage -> list of paths (relative to the deploy repository)."""
    value = read.data.get("hooks")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise read.fail("hooks", f"must be a dict of stage -> list of paths, not {value!r}")
    for stage, paths in value.items():
        if stage not in HOOK_STAGES:
            raise read.fail("hooks", f"names {stage!r}, not a stage ({', '.join(HOOK_STAGES)})")
        if (
            isinstance(paths, str)
            or not isinstance(paths, list | tuple)
            or not all(isinstance(p, str) and p for p in paths)
        ):
            raise read.fail("hooks", f"[{stage!r}] must be a list of paths, not {paths!r}")
    return {stage: list(paths) for stage, paths in value.items()}


_ASSET_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


def _staging_environment(read: _Reader) -> str | None:
    """``staging_environment``: None, or the name of an inventory (``inventories/NAME.py``)."""
    value = read.data.get("staging_environment")
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME.match(value):
        raise read.fail("staging_environment", f"must be an environment's name, not {value!r}")
    return value


def _staging_checks(read: _Reader) -> tuple[tuple[str, ...], ...]:
    """``staging_checks``: a list of commands, each an argv list (or a string split like a
    shell would, without running one)."""
    value = read.data.get("staging_checks") or []
    if not isinstance(value, list | tuple):
        raise read.fail("staging_checks", f"must be a list of commands, not {value!r}")
    checks: list[tuple[str, ...]] = []
    for item in value:
        try:
            argv = shlex.split(item) if isinstance(item, str) else list(item)
        except (TypeError, ValueError) as error:
            raise read.fail("staging_checks", f"holds {item!r}: {error}") from None
        if not argv or not all(isinstance(arg, str) and arg for arg in argv):
            raise read.fail("staging_checks", f"holds {item!r}, which is not a command")
        checks.append(tuple(argv))
    return tuple(checks)


def _asset_paths(read: _Reader) -> tuple[str, ...]:
    """``asset_paths``: a list of paths relative to a checkout (no ``..``, no leading ``/``),
    none of them inside another (each is replaced whole)."""
    value = read.data.get("asset_paths", Settings.asset_paths)
    if not isinstance(value, list | tuple):
        raise read.fail(
            "asset_paths", f"must be a list of paths like 'public/build', not {value!r}"
        )
    for item in value:
        if not isinstance(item, str) or not _ASSET_PATH.fullmatch(item) or ".." in item.split("/"):
            raise read.fail(
                "asset_paths", f"holds {item!r}, which is not a path inside the checkout"
            )
    for item in value:
        inside = [other for other in value if other == item or other.startswith(item + "/")]
        if len(inside) > 1:
            raise read.fail("asset_paths", f"names {item!r} more than once (or a path inside it)")
    return tuple(value)


def _prometheus_url(data: Mapping[str, Any], directory: Path) -> str | None:
    """``prometheus_url``: None or empty (the canary gate probes the colour itself), or an
    http(s) URL without credentials."""
    value = data.get("prometheus_url")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _URL.match(value):
        raise ConfigError(
            f"{locate('prometheus_url', directory)}: prometheus_url must be an http(s) URL "
            f"such as http://10.0.0.5:9090, not {value!r}"
        )
    return value.rstrip("/")
