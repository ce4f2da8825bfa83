"""Services on a host: nginx, php-fpm, supervisor (queue workers), Redis, packages.

Services are driven through ``service NAME ACTION``, which works on systemd hosts (it calls
``systemctl``: production, the sandbox's ``--init systemd``) and without systemd (init.d
scripts: the sandbox's default). Reloads are tested first and graceful: requests in flight
finish (php-fpm needs ``process_control_timeout`` > 0).

- :func:`service`, :func:`service_state`
- logs: :func:`journal_tail` (a unit's journal), :func:`service_log` (a service's log file, or
  its unit's journal on a systemd host where the file is not there)
- nginx: :func:`nginx_test`, :func:`nginx_reload`, :func:`nginx_signal_reload`,
  :func:`nginx_reload_settled` (returns once no old worker takes new connections)
- php-fpm: :func:`php_fpm_test`, :func:`php_fpm_reload`
- supervisor: :func:`supervisor_update`, :func:`supervisor_control`, :func:`supervisor_restart`,
  :func:`supervisor_group` (through supervisord's XML-RPC socket when it has one)
- queue workers: :func:`restart_live_workers`, :func:`restart_workers`
- Redis: :func:`redis_cli` (password on stdin), :func:`redis_wait_protected`
- server setup (``deploys/provision.py``): :func:`apt_install`, :func:`install_checked` (a
  configuration file put in place only if its test passes)

Example::

    as_root(php_fpm_reload(settings.php_version))   # php-fpm8.2 -t && service php8.2-fpm reload
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bgdeploy.commands.artisan import queue_restart
from bgdeploy.commands.shell import as_root, in_dir, join, q, tail, write_file
from bgdeploy.core.errors import ConfigError

if TYPE_CHECKING:
    from bgdeploy.core.settings import Settings


SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")


SERVICE_ACTIONS = ("start", "stop", "restart", "reload", "status")


def service(name: str, action: str) -> str:
    """``service NAME ACTION``: works on systemd hosts and in containers without systemd."""
    _service_name(name)
    if action not in SERVICE_ACTIONS:
        raise ConfigError(f"service action {action!r} is not one of {', '.join(SERVICE_ACTIONS)}")
    return f"service {name} {action}"


def _service_name(name: str) -> str:
    if not SERVICE_NAME.match(name):
        raise ConfigError(f"service name {name!r} is not valid")
    return name


SYSTEMD_BOOTED = "/run/systemd/system"
"""Exists on a host whose init is systemd (what ``sd_booted()`` and ``service`` test)."""


def journal_tail(unit: str, lines: int, follow: bool = False) -> str:
    """The last ``lines`` lines of a systemd unit's journal (``follow``: and every new one)."""
    command = f"journalctl -q --no-pager -u {_service_name(unit)} -n {int(lines)}"
    return command + (" -f" if follow else "")


def service_log(
    path: str, unit: str | None, lines: int, follow: bool = False, journal: bool = False
) -> str:
    """A service's log, wherever the host keeps it: the file ``path`` (:func:`tail`) when it
    exists; on a systemd host where it does not, the journal of ``unit`` (a first line says
    so); ``journal``: the unit's journal whatever the files (a host without systemd says so,
    then shows the file). ``unit`` None: the file only."""
    file_log = tail(path, lines, follow)
    if unit is None:
        return file_log
    from_journal = journal_tail(unit, lines, follow)
    systemd = f"[ -d {q(SYSTEMD_BOOTED)} ]"
    if journal:
        note = q(f"(no journal: this host does not run systemd; the log is {path})")
        return f"if {systemd}; then {from_journal}; else echo {note}; {file_log}; fi"
    note = q(f"({path} does not exist: the journal of {unit})")
    return (
        f"if [ ! -e {q(path)} ] && {systemd}; then echo {note}; {from_journal}; else {file_log}; fi"
    )


def service_state(name: str) -> str:
    """Print ``running`` or ``stopped`` (``service NAME status``; never fails)."""
    return f"if {service(name, 'status')} >/dev/null 2>&1; then echo running; else echo stopped; fi"


def nginx_test() -> str:
    """Test the whole nginx configuration, quietly (errors still print)."""
    return "nginx -t -q"


def nginx_reload() -> str:
    """Test, then gracefully reload nginx: requests in flight finish on the old workers."""
    return join(nginx_test(), service("nginx", "reload"))


NGINX_PID = "/run/nginx.pid"


def nginx_signal_reload() -> str:
    """Reload nginx by its master's ``HUP`` (what ``nginx -s reload`` and the systemd unit's
    reload send), the configuration already tested: the init script would test it again, a
    whole parse of the configuration per host. Falls back on ``service nginx reload`` when
    the pid file does not name a running nginx."""
    master = (
        f"p=$(cat {NGINX_PID} 2>/dev/null) && "
        '[ "$(cat /proc/$p/comm 2>/dev/null)" = nginx ] && kill -HUP "$p"'
    )
    return f"{{ {{ {master}; }} || {service('nginx', 'reload')} >/dev/null; }}"


NGINX_WORKER = "nginx: worker process"


def nginx_reload_settled(seconds: float = 5.0) -> str:
    """Gracefully reload nginx (already tested), then wait until no worker of the old
    configuration takes new connections: each one is gone or ``is shutting down`` (finishing
    its requests). So the new configuration serves every new request when this returns. The
    wait ends after ``seconds`` in any case (the reload was sent)."""
    workers = f"$(pgrep -d ' ' -f -x {q(NGINX_WORKER)})"
    stale = 'stale=; for p in $old; do case " $now " in *" $p "*) stale=1;; esac; done'
    loop = (
        f"i=0; while [ $i -lt {int(seconds * 100)} ]; do now={workers}; {stale}; "
        '[ -z "$stale" ] && break; i=$((i+1)); sleep 0.01; done; true'
    )
    return f"{{ old={workers}; {nginx_signal_reload()} && {{ {loop}; }}; }}"


def php_fpm_test(php_version: str) -> str:
    """Test the php-fpm configuration before a reload (the init script's reload does not)."""
    return f"php-fpm{php_version} -t"


def php_fpm_reload(php_version: str) -> str:
    """Test, then gracefully reload php-fpm (needs ``process_control_timeout`` > 0)."""
    return join(php_fpm_test(php_version), service(f"php{php_version}-fpm", "reload"))


def supervisor_update() -> str:
    """Make supervisord read changed program files and apply them (starts added programs)."""
    return join("supervisorctl reread", "supervisorctl update")


def supervisor_control(action: str, program: str) -> str:
    """``supervisorctl stop|start|restart NAME:*`` (every process of the program)."""
    if action not in ("stop", "start", "restart"):
        raise ConfigError(f"supervisor action {action!r} is not stop, start or restart")
    if not SERVICE_NAME.match(program):
        raise ConfigError(f"supervisor program {program!r} is not valid")
    return f"supervisorctl {action} {q(program + ':*')}"


def supervisor_restart(program: str) -> str:
    """Restart every process of a supervisor program (``NAME:*``)."""
    return supervisor_control("restart", program)


SUPERVISOR_SOCKET = "/var/run/supervisor.sock"


SUPERVISOR_RPC = """
import http.client, socket, sys, xmlrpc.client
class Connection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])
class Transport(xmlrpc.client.Transport):
    def make_connection(self, host):
        return Connection("localhost")
action, group = sys.argv[2], sys.argv[3]
rpc = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=Transport()).supervisor
try:
    done = getattr(rpc, action + "ProcessGroup")(group, True)
except (OSError, xmlrpc.client.Error) as error:
    sys.exit(f"supervisor: {action} {group}: {getattr(error, 'faultString', error)}")
for result in done:
    if result["status"] == 80:
        print(result["name"] + (": stopped" if action == "stop" else ": started"))
failed = [r["name"] + ": " + r["description"] for r in done if r["status"] != 80]
if failed:
    sys.exit(f"supervisor: {action} {group}: " + "; ".join(failed))
"""
"""``stop``/``start`` of a program's process group through supervisord's XML-RPC socket,
waiting as ``supervisorctl`` does: a few standard modules instead of supervisorctl's start-up
(about a tenth of the CPU, which adds up with many hosts on shared cores)."""


def supervisor_group(action: str, program: str) -> str:
    """``supervisorctl stop|start NAME:*``, through supervisord's socket when it is at
    :data:`SUPERVISOR_SOCKET` (:data:`SUPERVISOR_RPC`), else through ``supervisorctl``. Run as
    root; fails naming each process that did not stop or start."""
    if action not in ("stop", "start"):
        raise ConfigError(f"supervisor group action {action!r} is not stop or start")
    fallback = supervisor_control(action, program)
    sock = q(SUPERVISOR_SOCKET)
    rpc = f"python3 -I -S -c {q(SUPERVISOR_RPC)} {sock} {action} {q(program)}"
    return f"if [ -S {sock} ]; then {rpc}; else {fallback}; fi"


def restart_live_workers(settings: Settings, directory: str) -> str:
    """Restart the queue workers on the new code: the supervisor program is stopped (each
    worker finishes its job), ``queue:restart`` is signalled in ``directory`` (for workers
    elsewhere), and the program started again.

    Not ``queue:restart`` followed by ``supervisorctl restart``: a worker that exits for the
    queue restart is respawned, and a stop that reaches the new process in its first seconds
    waits the program's whole ``stopwaitsecs`` (90 s, measured) before supervisor kills it.
    """
    signal = in_dir(directory, queue_restart())
    if not settings.queue_workers:
        return signal
    program = f"{settings.app_name}-worker"
    return join(
        as_root(supervisor_group("stop", program)),
        signal,
        as_root(supervisor_group("start", program)),
    )


def restart_workers(settings: Settings) -> str:
    """Restart the live colour's queue workers (see :func:`restart_live_workers`)."""
    return restart_live_workers(settings, f"{settings.app_root}/current")


def redis_cli(port: int) -> str:
    """``redis-cli`` reading its commands (``AUTH`` first) on stdin: no password in argv."""
    return f"redis-cli -p {int(port)}"


def redis_wait_protected(address: str, port: int, seconds: int = 10) -> str:
    """Wait until Redis answers on ``address:port`` and refuses an unauthenticated client
    (``NOAUTH``); fails after ``seconds``. Proves a restart took the new bind and password."""
    probe = f"redis-cli -h {q(address)} -p {int(port)} ping 2>&1 | grep -q NOAUTH"
    message = f"bgdeploy: redis does not answer on {address}:{port} with a password required"
    return (
        f"for i in $(seq {int(seconds) * 4}); do if {probe}; then exit 0; fi; sleep 0.25; done; "
        f"echo {q(message)} >&2; exit 1"
    )


PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,99}\Z")


def apt_install(packages: list[str]) -> str:
    """Refresh the package lists, then install Debian packages (no recommends, no prompts)."""
    for package in packages:
        if not PACKAGE_NAME.match(package):
            raise ConfigError(f"package name {package!r} is not valid")
    names = " ".join(q(p) for p in packages)
    apt = "DEBIAN_FRONTEND=noninteractive apt-get"
    return join(f"{apt} update -q", f"{apt} install -y -q --no-install-recommends {names}")


def install_checked(new: str, dest: str, test: str, enable: str | None = None) -> str:
    """Put the file ``new`` in place of ``dest`` and run the configuration ``test``; when the
    test fails, the previous ``dest`` comes back (or none, if there was none) and the command
    fails. ``enable``: a symlink to point at ``dest`` as part of the same change (an nginx site
    in ``sites-enabled``), removed again on failure if this command created it.
    """
    backup = f"{dest}.bgdeploy-old"
    steps = [
        f"if [ -e {q(dest)} ]; then cp -p {q(dest)} {q(backup)}; else rm -f {q(backup)}; fi",
        f"mv -f {q(new)} {q(dest)}",
    ]
    undo = [f"if [ -e {q(backup)} ]; then mv -f {q(backup)} {q(dest)}; else rm -f {q(dest)}; fi"]
    if enable is not None:
        steps.append(
            f'{{ [ "$(readlink {q(enable)})" = {q(dest)} ] || '
            f"{{ ln -sfn {q(dest)} {q(enable)} && linked=1; }}; }}"
        )
        undo.append(f'if [ -n "$linked" ]; then rm -f {q(enable)}; fi')
    message = f"bgdeploy: {dest} failed the configuration test ({test}); the previous file is kept"
    return (
        "linked=; "
        + " && ".join(steps)
        + f" && if {test}; then rm -f {q(backup)}; else "
        + "; ".join(undo)
        + f"; echo {q(message)} >&2; exit 1; fi"
    )


_REPLACE_NEW = ".bgdeploy-new"
_REPLACE_PREV = ".bgdeploy-prev"


def replace_tested(files: dict[str, str], test: str, then: str) -> str:
    """Replace configuration ``files`` (path: content) all or none: each new file written
    beside its old one, the old ones kept, the new ones renamed over them, ``test`` run; when
    it fails the old files go back and the command fails, else ``then`` (a reload) runs. The
    kept copies are removed at the end."""
    paths = list(files)
    restore = "; ".join(
        f"if [ -e {q(p + _REPLACE_PREV)} ]; then mv -fT {q(p + _REPLACE_PREV)} {q(p)}; "
        f"else rm -f {q(p)}; fi"
        for p in paths
    )
    undo = f"{{ {restore}; echo 'bgdeploy: {test} failed: nothing changed' >&2; exit 1; }}"
    steps = [write_file(p + _REPLACE_NEW, content) for p, content in files.items()]
    steps += [f"rm -f {q(p + _REPLACE_PREV)}" for p in paths]
    steps += [f"{{ [ ! -e {q(p)} ] || cp -p {q(p)} {q(p + _REPLACE_PREV)}; }}" for p in paths]
    steps += [f"mv -fT {q(p + _REPLACE_NEW)} {q(p)}" for p in paths]
    cleanup = "rm -f " + " ".join(q(p + _REPLACE_PREV) for p in paths)
    return join(*steps) + f" && {{ {test} || {undo}; }} && {then} && {cleanup}"
