"""Choosing the lines that explain a failed command, from outputs shaped like the real ones
(captured from the sandbox image: Debian's composer 2, Laravel 8 on Symfony's console, PHP 8.2,
npm 9, git, PostgreSQL 15)."""

from __future__ import annotations

import pytest

from bgdeploy import commands
from bgdeploy.core import explain
from bgdeploy.fleet import runner

BOOT = "bgdeploy-boot-failure: the payments gateway key is missing"

SQL_ERROR = 'SQLSTATE[42P01]: Undefined table: 7 ERROR:  relation "visa_application_documents"'
QUERY = (
    f"{SQL_ERROR} does not exist\n"
    'LINE 1: alter table "visa_application_documents" add column "x" varchar...\n'
    "                    ^ (SQL: alter table "
    '"visa_application_documents" add column "tracking_code" varchar(255) null)'
)
PREVIOUS = (
    f"{SQL_ERROR} does not exist\n"
    'LINE 1: alter table "visa_application_documents" add column "x" varchar...\n'
    "                    ^"
)


def box(where: str, message: str, columns: int | None = None, ansi: bool = False) -> list[str]:
    """An exception as Symfony's console renders it (Application::doRenderThrowable): the
    ``In FILE line N:`` header, then the message in a padded box, each line cut every
    (columns - 5) characters when the terminal is ``columns`` wide."""
    width = columns - 1 if columns else 10**9
    lines: list[str] = []
    for line in message.split("\n"):
        chunks = [line[i : i + width - 4] for i in range(0, len(line), width - 4)] or [""]
        lines += chunks
    length = max(len(line) + 4 for line in lines)
    red, reset = ("\x1b[37;41m", "\x1b[39;49m") if ansi else ("", "")
    edge = f"{red}{' ' * length}{reset}"
    body = [f"{red}  {line}  {' ' * (length - len(line) - 4)}{reset}" for line in lines]
    header = f"\x1b[33mIn {where}:\x1b[39m" if ansi else f"In {where}:"
    return ["", header, edge, *body, edge, ""]


def pty(lines: list[str]) -> str:
    """Output as read through a pty: CRLF line ends."""
    return "\r\n".join(lines) + "\r\n"


COMPOSER_BOOT_FAILURE = pty(
    [
        "Installing dependencies from lock file",
        "Verifying lock file contents can be installed on current platform.",
        "Nothing to install, update or remove",
        "Generating optimized autoload files",
        "> @php artisan package:discover --ansi",
        *box("PaymentsServiceProvider.php line 11", BOOT, ansi=True),
        "Script @php artisan package:discover --ansi handling the post-autoload-dump event "
        "returned with error code 1",
    ]
)


def migrate_failure(columns: int | None) -> str:
    return pty(
        [
            "Migrating: 2025_08_01_000000_add_tracking_code",
            *box("Connection.php line 712", QUERY, columns),
            *box("Connection.php line 501", PREVIOUS, columns),
        ]
    )


def test_composer_boot_failure_names_the_exception_then_the_script() -> None:
    text = explain.explain(COMPOSER_BOOT_FAILURE)
    lines = text.splitlines()
    assert lines[0] == f"{BOOT} (In PaymentsServiceProvider.php line 11)"
    assert lines[1] == (
        "Script @php artisan package:discover --ansi handling the post-autoload-dump event "
        "returned with error code 1"
    )
    assert len(lines) == 2
    assert "Nothing to install" not in text  # what the last lines used to say
    assert "\x1b" not in text and "  " not in text  # no colours, no box padding
    assert explain.first_line(text).startswith(BOOT)


@pytest.mark.parametrize("columns", [80, None], ids=["wrapped at 80 columns", "not wrapped"])
def test_migrate_sqlstate_error_is_whole_however_the_terminal_wrapped_it(
    columns: int | None,
) -> None:
    output = migrate_failure(columns)
    if columns:  # the box really cut the table name in two
        assert '"visa_application_docu  \r\n  ments"' in output
    text = explain.explain(output)
    (line,) = text.splitlines()  # the cause (PDO's message) is part of the exception: once
    assert line.startswith(
        'SQLSTATE[42P01]: Undefined table: 7 ERROR: relation "visa_application_documents" '
        "does not exist LINE 1: alter table"
    )
    assert '(SQL: alter table "visa_application_documents" add column "tracking_code"' in line
    assert line.endswith("(In Connection.php line 712)")
    assert " ^ " not in line


def test_php_fatal_error_without_its_stack_trace() -> None:
    output = pty(
        [
            'PHP Fatal error:  Uncaught Error: Class "App\\Services\\Gateway" not found in '
            "/var/www/bideshgomon/blue/app/Providers/AppServiceProvider.php:21",
            "Stack trace:",
            "#0 /usr/share/php/Illuminate/Foundation/Application.php(1245): "
            "App\\Providers\\AppServiceProvider->register()",
            "#1 {main}",
            "  thrown in /var/www/bideshgomon/blue/app/Providers/AppServiceProvider.php on line 21",
        ]
    )
    assert explain.explain(output) == (
        'PHP Fatal error: Uncaught Error: Class "App\\Services\\Gateway" not found in '
        "/var/www/bideshgomon/blue/app/Providers/AppServiceProvider.php:21"
    )
    parse = "PHP Parse error:  Unclosed '(' in /srv/app/routes/api.php on line 7\n"
    assert (
        explain.explain("", parse)
        == "PHP Parse error: Unclosed '(' in /srv/app/routes/api.php on line 7"
    )


def test_npm_errors_without_the_debug_log() -> None:
    output = pty(
        [
            "> build",
            "> vite build",
            "",
            "vite v4.1.4 building for production...",
            "transforming...",
            "✓ 12 modules transformed.",
            "error during build:",
            'Error: [vite]: Rollup failed to resolve import "@/Pages/Visa" from '
            '"resources/js/app.js".',
            "    at onRollupWarning (file:///usr/share/nodejs/vite/dist/node/chunks/dep.js:1:1)",
            "npm ERR! code 1",
            "npm ERR! path /var/www/bideshgomon/blue",
            "npm ERR! command failed",
            "npm ERR! command sh -c vite build",
            "",
            "npm ERR! A complete log of this run can be found in:",
            "npm ERR!     /home/deploy/.npm/_logs/2026-12-03T12_32_38_355Z-debug-0.log",
        ]
    )
    lines = explain.explain(output).splitlines()
    assert lines == [
        'error during build: Error: [vite]: Rollup failed to resolve import "@/Pages/Visa" '
        'from "resources/js/app.js".',
        "npm ERR! code 1 path /var/www/bideshgomon/blue command failed command sh -c vite build",
    ]
    usage = "npm ERR! code EUSAGE\nnpm ERR! \nnpm ERR! The `npm ci` command can only install "
    assert explain.explain(usage + "with an existing package-lock.json\n").startswith(
        "npm ERR! code EUSAGE The `npm ci` command can only install with an existing"
    )


def test_git_fatal_and_error_with_the_files_it_names() -> None:
    assert explain.explain("", "fatal: reference is not a tree: 0123abcd\n") == (
        "fatal: reference is not a tree: 0123abcd"
    )
    checkout = (
        "error: Your local changes to the following files would be overwritten by checkout:\n"
        "\tconfig/app.php\n"
        "Please commit your changes or stash them before you switch branches.\n"
        "Aborting\n"
    )
    assert explain.explain("", checkout) == (
        "error: Your local changes to the following files would be overwritten by checkout: "
        "config/app.php"
    )


def test_postgres_errors_with_detail() -> None:
    output = (
        'pg_dump: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
        'failed: FATAL:  role "deploy" does not exist\n'
    )
    assert explain.explain("", output).startswith("pg_dump: error: connection to server")
    psql = (
        'psql:<stdin>:3: ERROR:  database "bideshgomon_restore" is being accessed by other users\n'
        "DETAIL:  There is 1 other session using the database.\n"
    )
    assert explain.explain(psql) == (
        'psql:<stdin>:3: ERROR: database "bideshgomon_restore" is being accessed by other '
        "users DETAIL: There is 1 other session using the database."
    )


def test_without_a_known_error_the_last_lines_stderr_first() -> None:
    out = "\n".join(f"step {n}" for n in range(20))
    assert explain.explain(out) == "\n".join(f"step {n}" for n in range(14, 20))
    assert explain.explain(out, "nginx: [emerg] unknown directive\n") == (
        "nginx: [emerg] unknown directive"
    )
    assert explain.explain("", "") == "no output"
    dotted = "  2025_07_01_000000_add_passport_country " + "." * 900 + " 12ms DONE\r\n"
    assert explain.explain(dotted) == "2025_07_01_000000_add_passport_country ... 12ms DONE"


def test_bounded_and_progress_redraws_removed() -> None:
    output = "\n".join(f"fatal: failure number {n} " + "x" * 1000 for n in range(20))
    lines = explain.explain(output).splitlines()
    assert len(lines) == explain.MAX_LINES
    assert all(len(line) <= explain.MAX_LINE for line in lines)
    assert lines[0].endswith("…")
    assert explain.explain("Downloading 10%\rDownloading 100%\rsh: 1: vite: not found\n") == (
        "sh: 1: vite: not found"
    )


def test_step_commands_set_a_wide_terminal() -> None:
    settings = next(iter(runner.check_environment("staging").settings.values()))
    steps = dict(commands.release_steps(settings, "/srv/app/blue", "a" * 40))
    wide = f"COLUMNS={explain.TERMINAL_COLUMNS} "
    assert f"{wide}composer install " in steps["composer install"]
    assert f"{wide}php -r " in steps["caches"]  # the caches, in one PHP process
    assert f"{wide}php artisan storage:link" in steps["storage link"]
    assert f"{wide}php artisan queue:restart" in steps["restart workers"]
    assert commands.migrate().startswith(f"{wide}php artisan migrate ")
    assert commands.migrate_rollback(1).startswith(f"{wide}php artisan migrate:rollback ")
    assert f"{wide}php artisan down" in commands.maintenance_down(settings)
    assert explain.TERMINAL_COLUMNS >= 500
