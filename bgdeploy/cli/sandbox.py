"""``bgdeploy sandbox up|build|status|down``: the local Docker fleet for the demo and the tests."""

from __future__ import annotations

import sys
from typing import Any

import click

from bgdeploy.cli.main import echo_json, handle_errors, json_option, progress


@click.group("sandbox")
def sandbox_group() -> None:
    """The local Docker fleet (web hosts and a db host) for the demo and the tests."""


name_option = click.option(
    "--name", default="default", show_default=True, help="Which sandbox (several can run)."
)


@sandbox_group.command("up")
@name_option
@click.option("--web", "web", default=2, show_default=True, help="Number of web hosts.")
@click.option("--single", is_flag=True, help="One host that is both web and db host.")
@click.option(
    "--monitoring",
    is_flag=True,
    help="Also run Prometheus, scraping every web host's /metrics with the runbook's alerts.",
)
@click.option(
    "--no-repository",
    is_flag=True,
    help="Mount no repository into the web hosts: they cannot fetch, the operator pushes the "
    'code (code_delivery = "push").',
)
@click.option(
    "--init",
    "init",
    type=click.Choice(["initd", "systemd"]),
    default="initd",
    show_default=True,
    help="The containers' init: services started by init.d scripts, or systemd as PID 1.",
)
@json_option("Print the status as JSON.")
@handle_errors
def sandbox_up(
    name: str,
    web: int,
    single: bool,
    monitoring: bool,
    no_repository: bool,
    init: str,
    as_json: bool,
) -> None:
    """Start a sandbox, building its image first when the recipe changed."""
    from bgdeploy import sandbox  # lazily: docker and the monitoring image (CLI start-up time)

    layout = "one host (web and db)" if single else f"{web} web host(s) and a db host"
    click.echo(f"sandbox {name}: starting {layout} ({init})", err=True)
    sandbox.up(
        name,
        web=1 if single else web,
        single=single,
        monitoring=monitoring,
        repository=not no_repository,
        init=init,
        progress=progress,
    )
    print_status(sandbox.status(name), as_json)


@sandbox_group.command("build")
@click.option(
    "--init",
    "inits",
    type=click.Choice(["initd", "systemd"]),
    multiple=True,
    default=("initd",),
    show_default=True,
    help="Which flavour's image (repeat for both; systemd is a layer on initd).",
)
@click.option("--monitoring", is_flag=True, help="Also the monitoring (Prometheus) image.")
@handle_errors
def sandbox_build(inits: tuple[str, ...], monitoring: bool) -> None:
    """Build the sandbox images the current recipe needs (nothing is started); an image that
    exists is kept. `scripts/test.sh` runs it while the unit tests run."""
    from bgdeploy.sandbox import docker_client, image
    from bgdeploy.sandbox import monitoring as monitoring_image

    client = docker_client()
    for init in dict.fromkeys(inits):
        click.echo(f"image {image.ensure_image(client, progress, init=init)}")
    if monitoring:
        base = image.ensure_image(client, progress)
        click.echo(f"image {monitoring_image.ensure_image(client, base, progress)}")


@sandbox_group.command("status")
@name_option
@json_option("Print the status as JSON.")
@handle_errors
def sandbox_status(name: str, as_json: bool) -> None:
    """Each container of a sandbox, its ports, and whether its SSH server answers."""
    from bgdeploy import sandbox

    report = sandbox.status(name)
    print_status(report, as_json)
    if not all(host["ready"] for host in report["hosts"]):
        sys.exit(1)
    if "monitoring" in report and not report["monitoring"]["ready"]:
        sys.exit(1)


@sandbox_group.command("down")
@name_option
@handle_errors
def sandbox_down(name: str) -> None:
    """Remove a sandbox's containers, network and files (and nothing else)."""
    from bgdeploy import sandbox

    removed = sandbox.down(name)
    for item in removed:
        click.echo(f"removed {item}")
    if not removed:
        click.echo(f"sandbox {name}: nothing to remove")


def print_status(report: dict[str, Any], as_json: bool) -> None:
    """A sandbox's status: one line per container (ports, ready, health), the URLs to open,
    and its Prometheus when it runs one."""
    if as_json:
        echo_json(report)
        return
    click.echo(f"sandbox {report['name']} (init: {report.get('init', 'initd')})")
    click.echo(f"  {'host':<8} {'groups':<8} {'ssh':>6} {'http':>6} {'preview':>8}  ready  health")
    for host in report["hosts"]:
        ports = host["ports"]
        click.echo(
            f"  {host['name']:<8} {','.join(host['groups']):<8} {ports['ssh']:>6} "
            f"{ports.get('http') or '-':>6} {ports.get('preview') or '-':>8}  "
            f"{'yes' if host['ready'] else 'NO ':<5}  {host.get('health', '-')}"
        )
    if "repository" in report:
        where = report["repository"]
        click.echo(
            f"repository: {where} (the web hosts fetch)"
            if where
            else 'repository: none on the web hosts (code_delivery = "push")'
        )
    urls = [host["url"] for host in report["hosts"] if host.get("url")]
    if urls:
        click.echo("open: " + "  ".join(urls))
    prometheus = report.get("monitoring")
    if prometheus:
        targets = ", ".join(f"{h} {health}" for h, health in prometheus["targets"].items())
        click.echo(
            f"prometheus: {prometheus['url']}  {'ready' if prometheus['ready'] else 'NOT READY'}"
            + (f"  targets: {targets}" if targets else "")
        )
