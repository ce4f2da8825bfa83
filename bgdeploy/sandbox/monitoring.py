"""Monitoring: the runbook's Prometheus alert rules, and the sandbox's Prometheus.

The alert rules ("Monitoring & Observability", "Alert Rules" in the runbook) are rendered from
``templates/prometheus/alert_rules.yml.j2`` with :class:`AlertSettings`: the runbook's thresholds
and ``for:`` durations by default (:data:`RUNBOOK`), the error-rate threshold shared with the
metric gate (:class:`bgdeploy.checks.gate.Thresholds`). The sandbox uses :data:`SANDBOX`: the same
thresholds with seconds instead of minutes, so an alert fires while a test waits.

============================  ==========================================  ===========  ========
alert                         expression (over ``rate_window``)           for          severity
============================  ==========================================  ===========  ========
HighErrorRate                 5xx share of all requests > 1 %             2m           critical
HighLatency                   p95 of request duration > 1 s               3m           warning
ApplicationDown               ``up == 0``: a web host's /metrics fails    1m           critical
DatabaseConnectionHigh        ``database_connections`` > 80               5m           warning
QueueBacklog                  ``queue_jobs_pending`` > 1000               10m          warning
HighFailedJobs                ``rate(queue_jobs_failed_total)`` > 0.1/s   5m           critical
CanaryDeploymentFailing       5xx share of one colour's requests > 2 %    1m           critical
============================  ==========================================  ===========  ========

.. code:: python

    from bgdeploy.sandbox import monitoring

    text = monitoring.alert_rules(monitoring.RUNBOOK)          # alert_rules.yml for production
    config = monitoring.prometheus_config(
        [monitoring.ScrapeTarget("web1", "10.0.0.11:80")], monitoring.RUNBOOK, env="prod"
    )

``bgdeploy sandbox up --monitoring`` runs :func:`start`: it builds the monitoring image
(``sandbox/monitoring/``: Debian's ``prometheus`` package on the target image, tagged by the hash
of its recipe and of the target image, built only when missing, under the same build lock as the
target image), writes ``prometheus.yml`` and ``alert_rules.yml`` into the sandbox's state
directory (``monitoring/``, mounted read-only into the container) and starts Prometheus on the
sandbox network. It scrapes every web host's ``/metrics`` through the host's public nginx port
on that network; its API and UI are published on 127.0.0.1 only, at the URL the sandbox state
records (``SandboxState.prometheus_url``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bgdeploy.checks.gate import Thresholds
from bgdeploy.checks.metrics import check_window
from bgdeploy.core import render
from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.files import write_atomic
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.settings import ROOT
from bgdeploy.sandbox import image
from bgdeploy.sandbox.containers import LABEL, published_port

if TYPE_CHECKING:
    from bgdeploy.sandbox.state import SandboxState

RECIPE_DIR = ROOT / "sandbox" / "monitoring"
IMAGE_REPOSITORY = "bgdeploy/monitoring"
CONFIG_DIR = "/etc/bgdeploy-monitoring"
"""Where the container finds ``prometheus.yml`` and ``alert_rules.yml``."""
CONFIG_FILE = "prometheus.yml"
RULES_FILE = "alert_rules.yml"
PROMETHEUS_PORT = 9090
WEB_PORT = 80
"""The web hosts' public nginx port inside the sandbox network (``public_port``)."""
READY_TIMEOUT = 60.0

ALERTS = (
    "HighErrorRate",
    "HighLatency",
    "ApplicationDown",
    "DatabaseConnectionHigh",
    "QueueBacklog",
    "HighFailedJobs",
    "CanaryDeploymentFailing",
)
"""The runbook's alerts, in its order."""


@dataclass(frozen=True)
class AlertSettings:
    """Thresholds and timings of the alert rules and of Prometheus's scrapes.

    + job: the scrape job of the web hosts (the rules select on it)
    + error_rate, canary_error_rate: largest 5xx share that is fine (0.01 is 1 %)
    + p95_seconds: largest p95 request duration that is fine, in seconds
    + db_connections, queue_backlog: largest number of connections / pending jobs that is fine
    + failed_jobs_per_second: largest rate of jobs failing for good that is fine
    + rate_window: the window of ``rate()`` (at least two scrape intervals; four is better)
    + for_*: how long a condition must hold before its alert fires
    + scrape_interval, scrape_timeout, evaluation_interval: Prometheus's global settings

    Invalid values raise :class:`~bgdeploy.core.errors.ConfigError` naming the field.
    """

    job: str = "bideshgomon"
    group: str = "bideshgomon.rules"
    error_rate: float = Thresholds().max_error_rate
    canary_error_rate: float = 0.02
    p95_seconds: float = 1.0
    db_connections: int = 80
    queue_backlog: int = 1000
    failed_jobs_per_second: float = 0.1
    rate_window: str = "5m"
    for_error_rate: str = "2m"
    for_latency: str = "3m"
    for_down: str = "1m"
    for_db_connections: str = "5m"
    for_queue_backlog: str = "10m"
    for_failed_jobs: str = "5m"
    for_canary: str = "1m"
    scrape_interval: str = "15s"
    scrape_timeout: str = "10s"
    evaluation_interval: str = "15s"

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in ("job", "group"):
                _check_name(item.name, value)
            elif isinstance(value, str):
                try:
                    check_window(value)
                except ValueError:
                    raise ConfigError(
                        f"alert setting {item.name} must be a duration such as 30s or 5m, "
                        f"not {value!r}"
                    ) from None
            else:
                _check_number(item.name, value)
        for share in ("error_rate", "canary_error_rate"):
            if getattr(self, share) > 1:
                raise ConfigError(f"alert setting {share} is a fraction (0.01 is 1 %), not > 1")


def _check_name(key: str, value: object) -> None:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "._-" for c in value):
        raise ConfigError(f"alert setting {key} must be letters, digits, '.', '_' or '-'")


def _check_number(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"alert setting {key} must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"alert setting {key} must be a finite number >= 0, not {value!r}")


RUNBOOK = AlertSettings()
"""The runbook's alert rules, for production and staging."""

SANDBOX = dataclasses.replace(
    RUNBOOK,
    rate_window="20s",
    for_error_rate="6s",
    for_latency="10s",
    for_down="10s",
    for_db_connections="20s",
    for_queue_backlog="30s",
    for_failed_jobs="20s",
    for_canary="4s",
    scrape_interval="2s",
    scrape_timeout="2s",
    evaluation_interval="2s",
)
"""The runbook's thresholds on a sandbox clock: scrapes and evaluations every 2 s, rates over
20 s, ``for:`` in seconds, so that an alert fires within half a minute of its cause."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One web host Prometheus scrapes: its inventory name and ``address:port``."""

    host: str
    address: str


def alert_rules(alerts: AlertSettings = RUNBOOK, template_dir: str | Path | None = None) -> str:
    """The rules file (``alert_rules.yml``) of the runbook's alerts."""
    return render.render("prometheus/alert_rules.yml.j2", None, template_dir, a=alerts)


def prometheus_config(
    targets: Sequence[ScrapeTarget],
    alerts: AlertSettings = RUNBOOK,
    env: str = "sandbox",
    rules_file: str = f"{CONFIG_DIR}/{RULES_FILE}",
    template_dir: str | Path | None = None,
) -> str:
    """``prometheus.yml``: scrape every target's ``/metrics`` and load the rules file."""
    if not targets:
        raise ConfigError("Prometheus needs at least one web host to scrape")
    return render.render(
        "prometheus/prometheus.yml.j2",
        None,
        template_dir,
        a=alerts,
        env=env,
        targets=list(targets),
        rules_file=rules_file,
    )


def image_tag(base_tag: str, recipe_dir: Path = RECIPE_DIR) -> str:
    """The monitoring image's tag: a hash of its recipe and of the image it is built on."""
    digest = hashlib.sha256(f"{image.recipe_hash(recipe_dir)}\0{base_tag}".encode())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"


def ensure_image(client: Any, base_tag: str, progress: Progress = quiet) -> str:
    """Build the monitoring image on ``base_tag`` unless it exists; returns its tag."""
    tag = image_tag(base_tag)

    def build() -> str:
        main, security = image.apt_mirrors()
        progress(f"building {tag} on {base_tag} (Debian's prometheus package)")
        buildargs = {"BASE": base_tag, "DEBIAN_MIRROR": main, "DEBIAN_SECURITY_MIRROR": security}
        return image.build_recipe(
            client, RECIPE_DIR, tag, buildargs, progress, what="the monitoring image"
        )

    return image.build_once(client, tag, build, progress)


def sandbox_targets(state: SandboxState) -> list[ScrapeTarget]:
    """The web hosts of a sandbox, by container name on the sandbox network."""
    return [ScrapeTarget(host.name, f"{host.container}:{WEB_PORT}") for host in state.group("web")]


def write_config(state: SandboxState, alerts: AlertSettings = SANDBOX) -> Path:
    """Render ``prometheus.yml`` and ``alert_rules.yml`` into the sandbox's ``monitoring/``."""
    directory = Path(state.directory) / "monitoring"
    directory.mkdir(mode=0o755, exist_ok=True)
    directory.chmod(0o755)
    files = {
        CONFIG_FILE: prometheus_config(sandbox_targets(state), alerts, env="sandbox"),
        RULES_FILE: alert_rules(alerts),
    }
    for name, text in files.items():
        write_atomic(directory / name, text, mode=0o644)
    return directory


def start(client: Any, state: SandboxState, progress: Progress = quiet) -> dict[str, Any]:
    """Start the sandbox's Prometheus; returns what the sandbox state records of it.

    ``{"container", "image", "ports": {"prometheus"}, "url", "config_dir"}``. Waits until
    Prometheus is ready (``/-/ready``).
    """
    # Prometheus is no target: built on the init.d image whatever the sandbox's flavour (the
    # systemd layer's STOPSIGNAL and environment are not for it).
    base = state.image if state.init == "initd" else image.ensure_image(client, progress)
    tag = ensure_image(client, base, progress)
    directory = write_config(state)
    name = f"bgdeploy-{state.name}-prometheus"
    progress(f"starting Prometheus ({name})")
    container = client.containers.run(
        tag,
        name=name,
        hostname="prometheus",
        detach=True,
        init=True,
        network=state.network,
        ports={f"{PROMETHEUS_PORT}/tcp": ("127.0.0.1", None)},
        volumes={str(directory): {"bind": CONFIG_DIR, "mode": "ro"}},
        labels={LABEL: state.name, f"{LABEL}.host": "prometheus"},
    )
    container.reload()
    port = published_port(container, f"{PROMETHEUS_PORT}/tcp")
    url = f"http://127.0.0.1:{port}"
    if not wait_ready(url, time.monotonic() + READY_TIMEOUT):
        logs = container.logs(tail=20).decode(errors="replace")
        raise OperationFailed(f"Prometheus ({name}) was not ready in time\n{logs}")
    progress(f"prometheus: {url} ready")
    return {
        "container": name,
        "image": tag,
        "ports": {"prometheus": port},
        "url": url,
        "config_dir": str(directory),
    }


def ready(url: str, timeout: float = 5.0) -> bool:
    """Does Prometheus at ``url`` answer ``/-/ready`` with 200?"""
    import httpx

    try:
        return httpx.get(f"{url}/-/ready", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(url: str, deadline: float, interval: float = 0.5) -> bool:
    """Poll :func:`ready` until it is true or ``deadline`` (``time.monotonic()``) passes."""
    while True:
        if ready(url, timeout=2):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def targets_health(url: str, timeout: float = 5.0) -> dict[str, str]:
    """Each scraped web host's health as Prometheus sees it: ``{"web1": "up", ...}``.

    Read from ``/api/v1/targets`` (active targets; ``up``, ``down`` or ``unknown`` before the
    first scrape). Raises :class:`OperationFailed` when Prometheus does not answer.
    """
    import httpx

    try:
        response = httpx.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=timeout)
        targets = response.json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        raise OperationFailed(f"Prometheus at {url} gave no targets: {error}") from None
    return {
        str(t.get("labels", {}).get("host") or t.get("scrapeUrl")): str(t.get("health"))
        for t in targets
    }


@dataclass
class MetricFamily:
    """One metric family of an exposition: its type, help text and samples.

    ``samples`` holds ``(sample name, labels, value)``; a histogram's samples are its
    ``_bucket``, ``_sum`` and ``_count`` series.
    """

    name: str
    type: str = "untyped"
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = dataclasses.field(default_factory=list)


def parse_exposition(text: str) -> dict[str, MetricFamily]:
    """Read Prometheus's text format 0.0.4 (what ``/metrics`` answers), checking it strictly.

    The text is parsed by ``prometheus_client.parser``; a counter's family is named as it is
    declared, with its ``_total`` (the library drops it). Raises ValueError for what the
    parser refuses (a malformed sample or label set, a value that is not a number, an unknown
    ``# TYPE``), for a family without a type (no ``# TYPE``, or ``untyped``), and for a
    histogram whose buckets are not cumulative, do not end with ``le="+Inf"`` or disagree with
    its ``_count``.
    """
    from prometheus_client.parser import text_string_to_metric_families  # the sandbox extra

    try:
        parsed = list(text_string_to_metric_families(text))
    except ValueError as error:
        raise ValueError(f"not a valid exposition: {error}") from None
    families: dict[str, MetricFamily] = {}
    for family in parsed:
        if family.type == "unknown":
            raise ValueError(f"{family.name}: samples of no declared family (no # TYPE)")
        name = f"{family.name}_total" if family.type == "counter" else family.name
        samples = [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
        families[name] = MetricFamily(name, family.type, family.documentation, samples)
    for family in families.values():
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: MetricFamily) -> None:
    series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for name, labels, value in family.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        if name.endswith("_bucket"):
            series.setdefault(key, []).append((float(labels.get("le", "nan")), value))
        elif name.endswith("_count"):
            counts[key] = value
    for key, buckets in series.items():
        shown = dict(key)
        bounds = [le for le, _ in buckets]
        values = [v for _, v in buckets]
        if bounds != sorted(bounds) or not bounds or bounds[-1] != math.inf:
            raise ValueError(f"{family.name} {shown}: buckets must rise and end with +Inf")
        if values != sorted(values):
            raise ValueError(f"{family.name} {shown}: bucket counts are not cumulative")
        if counts.get(key) != values[-1]:
            raise ValueError(f"{family.name} {shown}: _count differs from the +Inf bucket")
