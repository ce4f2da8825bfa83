"""PostgreSQL on the db host: SQL quoting, the migrations table, snapshots, database swap.

Everything runs as the ``postgres`` superuser over the local socket (``sudo -u postgres``); SQL
goes on stdin or through :func:`~bgdeploy.commands.shell.q`, names through :func:`sql_ident`,
strings through :func:`sql_literal`, so no value reaches SQL or a process list unquoted.

- psql: :func:`psql` (statements on stdin), :func:`psql_query` (one read-only query)
- the ``migrations`` table: :func:`applied_migrations`, :func:`migrations_after`
- the schema's fingerprint, compared before and after (:func:`schema_fingerprint`, read by
  :mod:`bgdeploy.checks.schema`)
- snapshots in ``backups_dir`` (``<name>.dump`` + ``<name>.dump.sha256``, mode 0600):
  :func:`snapshot_create` (verified, with a disk check and retention), :func:`snapshot_space`,
  :func:`snapshot_list`, :func:`snapshot_verify`, :func:`snapshot_id`
- restore without touching the live database until the end: :func:`snapshot_restore_scratch`
  into a scratch database, then :func:`database_swap` (renames in one transaction);
  :func:`drop_database`

Each prints a line its reader parses (``bgdeploy-snapshot: NAME SIZE SHA256``,
:data:`SNAPSHOT_CREATED`, ``bgdeploy-verify: ...``, ``bgdeploy-swap: ok``) and fails with the
reason on stderr.
"""

from __future__ import annotations

import re

from bgdeploy.commands.shell import as_user, q
from bgdeploy.core.errors import ConfigError

SQL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")


def sql_ident(name: str) -> str:
    """A PostgreSQL identifier (role or database name), checked, then double-quoted."""
    if not SQL_NAME.match(name):
        raise ConfigError(f"database name {name!r} is not valid")
    return f'"{name}"'


def sql_literal(value: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings: only ' is special)."""
    if "\0" in value:
        raise ConfigError("a NUL byte cannot be part of an SQL string")
    return "'" + value.replace("'", "''") + "'"


def psql(port: int, database: str | None = None) -> str:
    """``psql`` as the postgres superuser over the local socket, reading SQL on stdin and
    stopping at the first error. Statements go on stdin so that no value (a password hash)
    shows in process lists or in pyinfra's output."""
    target = f" -d {q(database)}" if database else ""
    return f"cd / && sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 -p {int(port)}{target}"


def psql_query(port: int, sql: str, database: str | None = None) -> str:
    """One read-only query as the postgres superuser; rows unaligned, ``|`` between fields."""
    target = f" -d {q(database)}" if database else ""
    return f"cd / && sudo -u postgres psql -X -tA -p {int(port)}{target} -c {q(sql)}"


def _psql_script(port: int) -> str:
    """``P``: the postgres superuser's psql on the maintenance database (for scripts)."""
    return f'P="psql -X -q -v ON_ERROR_STOP=1 -p {int(port)} -d postgres"'


_MIGRATIONS_EXIST = "SELECT to_regclass('migrations') IS NOT NULL"
_DATABASE_KB = "SELECT pg_database_size(current_database()) / 1024"


def _query(port: int, database: str, sql: str) -> str:
    """One query in a script already run as the postgres user; rows unaligned."""
    return f"psql -X -tA -p {int(port)} -d {q(database)} -c {q(sql)}"


def _wait_for_postgres(port: int, seconds: int) -> str:
    """Shell: wait until PostgreSQL accepts connections, at most ``seconds`` (then go on: the
    next command says what is wrong)."""
    return (
        f"i=0; until pg_isready -q -p {int(port)}; do i=$((i+1)); "
        f'[ "$i" -ge {int(seconds)} ] && break; sleep 1; done'
    )


def applied_migrations(port: int, database: str) -> str:
    """Print the migrations recorded in the database's ``migrations`` table (nothing when the
    table does not exist yet), as the postgres superuser on the db host."""
    exists = psql_query(port, _MIGRATIONS_EXIST, database)
    rows = psql_query(port, "SELECT migration FROM migrations ORDER BY 1", database)
    return f'if [ "$({exists})" = t ]; then {rows}; fi'


def migrations_after(port: int, database: str, batch: int, wait: int = 0) -> str:
    """The migrations recorded in a batch above ``batch`` (what one ``migrate`` run added), in
    the order ``migrate:rollback`` undoes them (newest first), one line
    ``bgdeploy-migration: NAME BATCH`` each, as the postgres user on the db host. ``wait``:
    seconds to wait for PostgreSQL to accept connections first."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ConfigError(f"migration batch {batch!r} must be a whole number")
    sql = (
        "SELECT 'bgdeploy-migration: ' || migration || ' ' || batch FROM migrations "  # noqa: S608
        f"WHERE batch > {int(batch)} ORDER BY batch DESC, migration DESC"
    )
    exists = _query(port, database, _MIGRATIONS_EXIST)
    query = f"psql -X -tA -v ON_ERROR_STOP=1 -p {int(port)} -d {q(database)} -c {q(sql)}"
    script = "; ".join(
        [
            *([_wait_for_postgres(port, wait)] if wait else []),
            f'e=$({exists}) || exit 1; if [ "$e" = t ]; then {query}; fi',
        ]
    )
    return as_user("postgres", script)


def schema_fingerprint(
    port: int, database: str, compare_with: str | None = None, wait: int = 0
) -> str:
    """The database's fingerprint (:mod:`bgdeploy.checks.schema`), as the postgres user on the db
    host.

    Prints ``bgdeploy-fingerprint: SHA256 BATCH ROWS``: the sha256 of the schema
    (``pg_dump --schema-only --no-owner --no-privileges`` without its comments, blank lines and
    per-run ``\\restrict`` keys) followed by the ``migrations`` table's rows (name and batch,
    sorted), the highest batch (0 without the table) and the number of rows.
    ``compare_with``: a snapshot (``.dump``) whose schema is compared with the database's: each
    differing line printed as ``bgdeploy-schema-diff: < line`` (snapshot) or ``> line`` (now),
    at most 40. ``wait``: seconds to wait for PostgreSQL to accept connections first. Changes
    nothing."""

    def filtered(source: str) -> str:
        return (
            "grep -v -e '^--' -e '^\\\\restrict' -e '^\\\\unrestrict' -e '^[[:space:]]*$' "
            f'"{source}" || true'
        )

    exists = _query(port, database, _MIGRATIONS_EXIST)
    rows_sql = "SELECT migration || ' ' || batch FROM migrations ORDER BY migration, batch"
    rows = _query(port, database, rows_sql)
    lines = [
        "set -e",
        "umask 077",
        't=$(mktemp); trap \'rm -f "$t" "$t.raw" "$t.rows" "$t.snap"\' EXIT',
        *([_wait_for_postgres(port, wait)] if wait else []),
        f'pg_dump --schema-only --no-owner --no-privileges -p {int(port)} -f "$t.raw" '
        f"{q(database)}",
        f'{{ {filtered("$t.raw")}; }} > "$t"',
        f'if [ "$({exists})" = t ]; then {rows} > "$t.rows"; else : > "$t.rows"; fi',
        'echo "bgdeploy-fingerprint: $(cat "$t" "$t.rows" | sha256sum | cut -c1-64) '
        "$(awk 'BEGIN {m = 0} $NF > m {m = $NF} END {print m}' \"$t.rows\") "
        '$(wc -l < "$t.rows")"',
    ]
    if compare_with is not None:
        if not compare_with.endswith(".dump") or not SNAPSHOT_PATH.match(compare_with):
            raise ConfigError(f"snapshot path {compare_with!r} is not valid")
        lines.append(
            f"if [ -r {q(compare_with)} ]; then "
            f'pg_restore --schema-only --no-owner --no-privileges -f "$t.raw" {q(compare_with)} '
            f'&& {{ {filtered("$t.raw")}; }} > "$t.snap" && '
            '{ diff "$t.snap" "$t" | grep "^[<>]" | head -n 40 | '
            "sed 's/^/bgdeploy-schema-diff: /'; true; }; fi"
        )
    return as_user("postgres", "; ".join(lines))


SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


SNAPSHOT_PATH = re.compile(r"^/[A-Za-z0-9_./-]+\Z")


SNAPSHOT_CREATED = re.compile(r"^bgdeploy-snapshot: (\S+) (\d+) ([0-9a-f]{64})$", re.MULTILINE)
"""The line :func:`snapshot_create` ends with: name, size in bytes, sha256."""


def snapshot_id(name: str) -> str:
    """A snapshot's name, checked: letters, digits, ``.``, ``_``, ``-`` (no ``/``, no leading
    dot), at most 128 characters; a trailing ``.dump`` is dropped (``snapshot list`` names)."""
    base = name.removesuffix(".dump") if isinstance(name, str) else ""
    if not SNAPSHOT_NAME.match(base):
        raise ConfigError(
            f"snapshot name {name!r} is not valid (letters, digits, '.', '_', '-'; "
            "no '/', not starting with '.')"
        )
    return base


def snapshot_create(backups_dir: str, name: str, database: str, port: int, keep: int) -> str:
    """A verified database snapshot, to run as the postgres user on the db host.

    Checks free disk first (at least twice the previous dump; before the first one, the
    database's size), then ``pg_dump -Fc`` to ``<backups_dir>/<name>.dump``, reads it back
    completely (``pg_restore -f /dev/null``: ``--list`` alone misses a truncated dump), writes
    the ``<name>.dump.sha256`` sidecar, makes both 0600 and keeps the newest ``keep`` dumps.
    Prints ``bgdeploy-snapshot: NAME SIZE SHA256``.
    """
    if not SNAPSHOT_NAME.match(name):
        raise ConfigError(f"snapshot name {name!r} is not valid")
    if not 1 <= int(keep) <= 1000:
        raise ConfigError(f"snapshot_keep {keep!r} must be from 1 to 1000")
    dump, tmp = f"{name}.dump", f"{name}.dump.tmp"
    script = "; ".join(
        [
            "set -e",
            f"cd {q(backups_dir)}",
            "umask 077",
            f"trap 'rm -f {tmp}' EXIT",
            *_snapshot_need(database, port),
            'if [ "$free" -lt "$need" ]; then echo "bgdeploy-snapshot: not enough disk in '
            f'{backups_dir}: $free KiB free, $need KiB needed (twice the previous dump)" >&2; '
            "exit 1; fi",
            f"pg_dump -Fc -Z 6 --no-owner -p {int(port)} -f {tmp} {q(database)}",
            f"pg_restore -f /dev/null {tmp}",
            f"mv -f {tmp} {dump}",
            f"sha256sum {dump} > {dump}.sha256",
            f"chmod 0600 {dump} {dump}.sha256",
            f"ls -1t -- *.dump | tail -n +{int(keep) + 1} | "
            'while read -r old; do rm -f -- "$old" "$old.sha256"; done',
            f'echo "bgdeploy-snapshot: {name} $(stat -c %s {dump}) $(cut -d" " -f1 {dump}.sha256)"',
        ]
    )
    return as_user("postgres", script)


def _snapshot_need(database: str, port: int) -> list[str]:
    """Shell lines (in the backups directory) setting ``need`` and ``free`` in KiB: a snapshot
    needs twice the previous dump, or before the first one the database's size."""
    return [
        "prev=$(ls -1t -- *.dump 2>/dev/null | head -n 1)",
        'if [ -n "$prev" ]; then need=$(( $(stat -c %s -- "$prev") * 2 / 1024 )); '
        f"else need=$({_query(port, database, _DATABASE_KB)}); fi",
        "free=$(df -Pk . | awk 'NR==2 {print $4}')",
    ]


def snapshot_space(backups_dir: str, database: str, port: int) -> str:
    """Print ``need_kb=N``, ``free_kb=N`` and ``db_kb=N`` for the next snapshot on the db host
    (the rule :func:`snapshot_create` enforces), as the postgres user. Changes nothing."""
    script = "; ".join(
        [
            "set -e",
            f"cd {q(backups_dir)}",
            *_snapshot_need(database, port),
            f"db=$({_query(port, database, _DATABASE_KB)})",
            'echo "need_kb=$need"; echo "free_kb=$free"; echo "db_kb=$db"',
        ]
    )
    return as_user("postgres", script)


SNAPSHOT_LIST_PREFIX = "bgdeploy-snapshot-list "


def snapshot_list(backups_dir: str) -> str:
    """List the snapshots in ``backups_dir``, newest first, as the postgres user: one line
    ``bgdeploy-snapshot-list NAME|BYTES|TAKEN (UTC)|SIDECAR (yes/no)`` per ``.dump``."""
    line = (
        f"printf '{SNAPSHOT_LIST_PREFIX}%s|%s|%s|%s\\n' \"${{f%.dump}}\" "
        '"$(stat -c %s -- "$f")" "$(date -u -r "$f" +%Y-%m-%dT%H:%M:%SZ)" '
        '"$(if [ -f "$f.sha256" ]; then echo yes; else echo no; fi)"'
    )
    script = (
        f"cd {q(backups_dir)} && {{ ls -1t -- *.dump 2>/dev/null || true; }} | "
        f"while IFS= read -r f; do {line}; done"
    )
    return as_user("postgres", script)


def snapshot_verify(backups_dir: str, name: str) -> str:
    """Verify a snapshot, as the postgres user on the db host: the dump's sha256 equals its
    ``.sha256`` sidecar, ``pg_restore --list`` reads its table of contents, and
    ``pg_restore -f /dev/null`` reads it whole. Prints ``bgdeploy-verify: NAME ok BYTES SHA256``;
    otherwise fails with the reason on stderr."""
    name = snapshot_id(name)
    dump = f"{name}.dump"

    def fail(why: str) -> str:
        return f"{{ echo {q('bgdeploy-verify: ' + name + ': ' + why)} >&2; exit 1; }}"

    script = "\n".join(
        [
            f"cd {q(backups_dir)} || exit 1",
            f"[ -f {dump} ] || {fail(f'no {dump} in {backups_dir}')}",
            f"[ -f {dump}.sha256 ] || {fail(f'{dump}.sha256 is missing')}",
            f"want=$(cut -d' ' -f1 {dump}.sha256)",
            f"have=$(sha256sum < {dump} | cut -d' ' -f1)",
            f'[ "$want" = "$have" ] || {fail("sha256 does not match its .sha256 sidecar")}',
            f"pg_restore --list {dump} > /dev/null || {fail('pg_restore --list cannot read it')}",
            f"pg_restore -f /dev/null {dump} || {fail('pg_restore cannot read it whole')}",
            f'echo "bgdeploy-verify: {name} ok $(stat -c %s {dump}) $have"',
        ]
    )
    return as_user("postgres", script)


def snapshot_restore_scratch(
    backups_dir: str, name: str, port: int, scratch: str, owner: str, before: str
) -> str:
    """Restore a snapshot into the empty database ``scratch`` (owned by ``owner``, the app's
    role, its objects too), as the postgres user on the db host; the live database is not
    touched. The database a previous restore replaced (``before``) is dropped first (fails
    while someone is connected to it). Fails, ``scratch`` dropped again, when
    ``pg_restore`` (one transaction, stop at the first error) fails."""
    dump = f"{snapshot_id(name)}.dump"
    create = f"CREATE DATABASE {sql_ident(scratch)} OWNER {sql_ident(owner)} TEMPLATE template0"
    drop = f"DROP DATABASE IF EXISTS {sql_ident(scratch)}"
    message = f"bgdeploy-restore: {dump} could not be restored into {scratch}; live not touched"
    script = "\n".join(
        [
            "set -e",
            f"cd {q(backups_dir)}",
            _psql_script(port),
            f"$P -c {q(f'DROP DATABASE IF EXISTS {sql_ident(before)}')}",
            f"$P -c {q(drop)}",
            f"$P -c {q(create)}",
            f"if ! pg_restore --no-owner --role={q(owner)} --single-transaction --exit-on-error "
            f"-p {int(port)} -d {q(scratch)} {dump}; then "
            f"$P -c {q(drop)}; echo {q(message)} >&2; exit 1; fi",
            f"echo {q('bgdeploy-restore: ' + scratch + ' ready')}",
        ]
    )
    return as_user("postgres", script)


def drop_database(port: int, database: str) -> str:
    """Drop a database if it exists, as the postgres user (a scratch restore left behind)."""
    sql = f"DROP DATABASE IF EXISTS {sql_ident(database)}"
    return as_user("postgres", f"cd / && {_psql_script(port)} && $P -c {q(sql)}")


def database_swap(port: int, live: str, scratch: str, before: str, wait: int = 10) -> str:
    """Swap the database ``scratch`` in under the name ``live``, as the postgres user.

    New connections to ``live`` are refused (``ALLOW_CONNECTIONS false``), its sessions are
    terminated (for up to ``wait`` seconds), then in one transaction ``live`` becomes
    ``before`` and ``scratch`` becomes ``live``. On any failure ``live`` takes connections
    again, unchanged, and the command fails. Prints ``bgdeploy-swap: ok``.
    """
    ident, literal = sql_ident(live), sql_literal(live)
    for name in (scratch, before):
        sql_ident(name)
    # live is a checked name, quoted by sql_literal: nothing reaches SQL unquoted.
    count = f"SELECT count(*) FROM pg_stat_activity WHERE datname = {literal}"  # noqa: S608
    terminate = (
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {literal} "  # noqa: S608
        "AND pid <> pg_backend_pid()"
    )
    rename_live = f"ALTER DATABASE {ident} RENAME TO {sql_ident(before)}"
    rename_scratch = f"ALTER DATABASE {sql_ident(scratch)} RENAME TO {ident}"
    message = f"bgdeploy-swap: {live} still has sessions or could not be renamed; it is unchanged"
    script = "\n".join(
        [
            "cd /",
            _psql_script(port),
            f"$P -c {q(f'ALTER DATABASE {ident} WITH ALLOW_CONNECTIONS false')} || exit 1",
            "n=unknown",
            f"for i in $(seq {int(wait) * 5}); do $P -tA -c {q(terminate)} > /dev/null; "
            f'n=$($P -tA -c {q(count)}); [ "$n" = 0 ] && break; sleep 0.2; done',
            f'if [ "$n" = 0 ] && $P -1 -c {q(rename_live)} -c {q(rename_scratch)}; then',
            f"  $P -c {q(f'ALTER DATABASE {sql_ident(before)} WITH ALLOW_CONNECTIONS true')}",
            "  echo 'bgdeploy-swap: ok'",
            "else",
            f"  $P -c {q(f'ALTER DATABASE {ident} WITH ALLOW_CONNECTIONS true')}",
            f"  echo {q(message)} >&2; exit 1",
            "fi",
        ]
    )
    return as_user("postgres", script)
