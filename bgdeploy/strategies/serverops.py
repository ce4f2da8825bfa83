"""pyinfra facts and operations that server setup needs and pyinfra does not have.

Every operation here reads the server's state when it runs and yields nothing (``host.noop``)
when the server is already as asked, so a second provisioning run reports no change. Values
reach the shell through :mod:`bgdeploy.commands`; secrets travel in uploaded files or on stdin,
never in a command line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.api.command import FileUploadCommand
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File, Link, Sha1File
from pyinfra.operations import files

from bgdeploy import commands

SCRAM_ITERATIONS = 4096


# Facts ----------------------------------------------------------------------------------


class ServiceRunning(FactBase[bool]):
    """Whether ``service NAME status`` says the service runs."""

    def command(self, service: str) -> str:
        return commands.service_state(service)

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[-1].strip() == "running"

    def default(self) -> bool:
        return False


class PostgresRole(FactBase[dict[str, Any] | None]):
    """A PostgreSQL role: ``{"login": bool, "verifier": "SCRAM-SHA-256$..."}``, or None."""

    def command(self, role: str, port: int) -> str:
        sql = (
            "SELECT rolcanlogin, coalesce(rolpassword, '') FROM pg_authid "  # noqa: S608 - quoted
            f"WHERE rolname = {commands.sql_literal(role)}"
        )
        return commands.psql_query(port, sql)

    def process(self, output: list[str]) -> dict[str, Any] | None:
        for line in output:
            login, _, verifier = line.partition("|")
            return {"login": login == "t", "verifier": verifier.strip()}
        return None

    def default(self) -> None:
        return None


class PostgresDatabaseOwner(FactBase[str | None]):
    """The owner of a PostgreSQL database, or None when there is no such database."""

    def command(self, database: str, port: int) -> str:
        sql = (
            "SELECT pg_get_userbyid(datdba) FROM pg_database "  # noqa: S608 - quoted literal
            f"WHERE datname = {commands.sql_literal(database)}"
        )
        return commands.psql_query(port, sql)

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output and output[0].strip() else None

    def default(self) -> None:
        return None


# SCRAM-SHA-256 verifiers (RFC 5802/7677, PostgreSQL's pg_authid format) -------------------


def scram_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The verifier PostgreSQL stores for ``password``. Sending this instead of the password
    keeps the password itself off the database server (and out of its logs)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored verifier is the one of ``password`` (nothing is sent anywhere)."""
    try:
        method, rest = verifier.split("$", 1)
        params, _keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        if method != "SCRAM-SHA-256":
            return False
        expected = scram_verifier(password, base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, verifier)


# Operations -------------------------------------------------------------------------------


@operation()
def packages(packages: list[str]):  # noqa: ANN201 - pyinfra operations are generators
    """
    Install the Debian packages that are missing (the package lists are refreshed first).

    + packages: package names
    """
    installed = host.get_fact(DebPackages)
    missing = [name for name in packages if name not in installed]
    if not missing:
        host.noop("packages are installed")
        return
    yield commands.apt_install(missing)


@operation()
def service_running(service: str):  # noqa: ANN201
    """
    Start a service (``service NAME start``) unless it already runs.

    + service: the init script's name (``php8.2-fpm``, ``nginx``, ``postgresql``)
    """
    if host.get_fact(ServiceRunning, service=service):
        host.noop(f"{service} is running")
        return
    yield commands.service(service, "start")


@operation()
def link_if_missing(  # noqa: ANN201
    path: str, target: str, user: str | None = None, group: str | None = None
):
    """
    Create a symlink only when nothing exists at ``path``; an existing one is left as it is
    (``current`` keeps pointing at the live colour a deploy chose).

    + path: the link
    + target: what a new link points to
    + user, group: owner of a new link
    """
    if host.get_fact(Link, path=path) is not None or host.get_fact(File, path=path) is not None:
        host.noop(f"{path} exists, left as it is")
        return
    yield StringCommand("ln", "-s", commands.q(target), commands.q(path))
    if user:
        owner = f"{user}:{group}" if group else user
        yield StringCommand("chown", "-h", commands.q(owner), commands.q(path))


@operation()
def file_if_missing(  # noqa: ANN201
    path: str, content: str, user: str = "root", group: str = "root", mode: str = "644"
):
    """
    Write a file only when it does not exist; an existing one is never touched (the nginx
    colour includes: provisioning must not flip the live colour a switch chose).

    + path: remote file
    + content: its text
    + user, group, mode: of a new file
    """
    if host.get_fact(File, path=path) is not None:
        host.noop(f"{path} exists, left as it is")
        return
    # pyinfra 3.10 has no public name for an operation's body: ``_inner`` is the way it
    # documents (its "called within another operation" error says so) and uses 84 times in its
    # own operations to nest one operation in another.
    yield from files.put._inner(src=StringIO(content), dest=path, user=user, group=group, mode=mode)


def _sha1(content: str) -> str:
    return hashlib.sha1(content.encode(), usedforsecurity=False).hexdigest()


def _in_place(path: str, content: str, user: str, group: str, mode: str) -> bool:
    remote = host.get_fact(File, path=path)
    if not remote:
        return False
    return (
        host.get_fact(Sha1File, path=path) == _sha1(content)
        and remote["user"] == user
        and remote["group"] == group
        and remote["mode"] == int(mode)
    )


@operation()
def checked_file(  # noqa: ANN201
    path: str,
    content: str,
    test: str,
    user: str = "root",
    group: str = "root",
    mode: str = "644",
    enable: str | None = None,
):
    """
    Install a configuration file only if the service's configuration test passes with it.

    The new text is uploaded beside the file (``PATH.bgdeploy-new``), moved over it and
    ``test`` runs (``nginx -t``, ``php-fpm8.2 -t``). When the test fails the previous file is
    put back (or the new one removed) and the operation fails: a broken template never stays
    installed, and the running service, which was not reloaded, keeps its configuration.

    + path: the configuration file
    + content: its text
    + test: the shell command that tests the whole configuration
    + user, group, mode: of the file
    + enable: a symlink that must point at ``path`` (nginx ``sites-enabled``)
    """
    link = host.get_fact(Link, path=enable) if enable else None
    enabled = enable is None or (bool(link) and link["link_target"] == path)
    if enabled and _in_place(path, content, user, group, mode):
        host.noop(f"{path} is up to date")
        return
    new = f"{path}.bgdeploy-new"
    yield FileUploadCommand(
        StringIO(content), new, remote_temp_filename=host.get_temp_filename(new)
    )
    yield StringCommand("chown", commands.q(f"{user}:{group}"), commands.q(new))
    yield StringCommand("chmod", commands.q(mode), commands.q(new))
    yield commands.install_checked(new, path, test, enable)


@operation()
def secret_file(  # noqa: ANN201
    path: str,
    content: str,
    user: str,
    group: str,
    mode: str,
    upload_dir: str,
):
    """
    Write a file that holds secrets (``shared/.env``, Redis' password) so that it is never
    readable by others, not even for a moment: the upload lands in ``upload_dir`` (private
    to the SSH user) and a new file is created with its final owner and mode before the
    text is copied in. Nothing of the content is printed.

    + path: remote file
    + content: its text
    + user, group, mode: of the file
    + upload_dir: a directory only the SSH user can read
    """
    if _in_place(path, content, user, group, mode):
        host.noop(f"{path} is up to date")
        return
    if not host.get_fact(File, path=path):
        yield StringCommand(
            "install",
            "-m",
            commands.q(mode),
            "-o",
            commands.q(user),
            "-g",
            commands.q(group),
            "/dev/null",
            commands.q(path),
        )
    temp = f"{upload_dir}/bgdeploy-{_sha1(path)}"
    yield FileUploadCommand(StringIO(content), path, remote_temp_filename=temp)
    yield StringCommand("chown", commands.q(f"{user}:{group}"), commands.q(path))
    yield StringCommand("chmod", commands.q(mode), commands.q(path))


@operation()
def postgres_role(role: str, password: str, port: int):  # noqa: ANN201
    """
    A PostgreSQL login role with this password. Nothing changes when the role can log in
    and its stored SCRAM verifier matches the password (checked here, locally). Otherwise a
    new verifier is computed here and sent to ``psql`` on stdin: the password never reaches
    the server, a command line or a log.

    + role: the role name
    + password: its password (printable ASCII)
    + port: PostgreSQL's port
    """
    current = host.get_fact(PostgresRole, role=role, port=port)
    if current and current["login"] and scram_matches(current["verifier"], password):
        host.noop(f"role {role} exists with this password")
        return
    verb = "ALTER" if current else "CREATE"
    sql = (
        f"{verb} ROLE {commands.sql_ident(role)} WITH LOGIN "
        f"PASSWORD {commands.sql_literal(scram_verifier(password))};\n"
    )
    yield StringCommand(commands.psql(port), _stdin=sql)


@operation()
def postgres_database(database: str, owner: str, port: int):  # noqa: ANN201
    """
    A PostgreSQL database owned by ``owner`` (created, or given to ``owner``).

    + database: the database name
    + owner: the role that owns it
    + port: PostgreSQL's port
    """
    current = host.get_fact(PostgresDatabaseOwner, database=database, port=port)
    if current == owner:
        host.noop(f"database {database} exists, owned by {owner}")
        return
    name, role = commands.sql_ident(database), commands.sql_ident(owner)
    if current is None:
        sql = f"CREATE DATABASE {name} OWNER {role};\n"
    else:
        sql = f"ALTER DATABASE {name} OWNER TO {role};\n"
    yield StringCommand(commands.psql(port), _stdin=sql)
