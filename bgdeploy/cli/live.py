"""What the operator sees while a run goes, and the run's log file.

:class:`RunOutput` follows a run (its pyinfra events and log lines, and bgdeploy's own
progress lines) and shows it one of three ways, on stderr:

- ``live`` (stderr is a terminal): the run's stage, and one line per host that is redrawn in
  place (the step it is on, operations done of its total, seconds, the last problem), drawn by
  ``rich``; while a canary is watched, its window below them (:func:`canary_panel`: the time
  gone and left, each colour's requests, error rate and p95, each check's state; then the
  outcome); bgdeploy's own lines scroll above it;
- ``plain`` (stderr is a file or a pipe: CI): timestamped lines, one per stage, step and
  failure, and one per canary evaluation at most every few seconds, nothing redrawn;
- ``quiet`` (``--quiet``): nothing; only the final table (on stdout) is printed.

``--verbose`` adds pyinfra's own log as it comes. Whichever way, everything (pyinfra's log,
every event as a plain line, bgdeploy's lines, the final table) goes to the run's log file
(:class:`bgdeploy.core.runlog.RunLog`), named at the end.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from bgdeploy.core import progress as progress_mod
from bgdeploy.core.runlog import RunLog, log_directory

MODES = ("live", "plain", "quiet")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TROUBLE = re.compile(r"error|fail|fatal|refused|denied|traceback", re.IGNORECASE)
EXCERPT = 15
"""pyinfra lines about errors shown when a host failed (without ``--verbose``)."""
CHECK_ROWS = 12
"""A canary's checks shown one per line; past that, the failed and overall ones first and
the rest counted."""
VERDICT_STYLE = {"pass": "green", "fail": "bold red", "not evaluated": "yellow"}


def choose_mode(quiet: bool, stream: TextIO | None = None) -> str:
    """``quiet`` when asked; ``live`` when ``stream`` (stderr) is a terminal that can redraw
    (not ``TERM=dumb``); else ``plain``."""
    if quiet:
        return "quiet"
    stream = sys.stderr if stream is None else stream
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    return "live" if terminal and os.environ.get("TERM", "") != "dumb" else "plain"


def canary_panel(canary: progress_mod.CanaryView, now: float | None = None) -> Any:
    """A canary's window as the live view draws it (a rich renderable): the headline with a
    bar of the time gone, a row per colour (requests, error rate, p95) and a row per check
    (value, threshold, verdict, consecutive failed evaluations); once decided, the outcome and
    its reason."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    now = time.time() if now is None else now
    head = Table.grid(padding=(0, 2))
    head.add_column(no_wrap=True)
    head.add_column(no_wrap=True)
    gone = canary.seconds(now)
    bar = ProgressBar(total=canary.window or 1.0, completed=gone, width=30)
    head.add_row(Text(canary.headline(now), style="bold"), bar if canary.window else Text(""))
    parts: list[Any] = [head]
    colours = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
    for title in ("colour", "requests", "error rate", "p95"):
        colours.add_column(title, justify="left" if title == "colour" else "right", no_wrap=True)
    for name, numbers in canary.ordered_colours():
        colours.add_row(Text(name, style="bold"), *map(Text, numbers.cells()))
    if canary.colours:
        parts.append(colours)
    if canary.checks:
        parts.append(_checks_table(canary.checks))
    if canary.ended:
        style = "bold green" if canary.state == "promote" else "bold red"
        said = canary.outcome + (f": {canary.reason}" if canary.reason else "")
        parts.append(Text(said, style=style))
    return Group(*parts)


def _checks_table(checks: list[progress_mod.CanaryCheck]) -> Any:
    from rich.table import Table
    from rich.text import Text

    order = range(len(checks))
    if len(checks) > CHECK_ROWS:  # the failed and overall ones first, shown in their order
        first = [i for i in order if checks[i].verdict == "fail" or not checks[i].route]
        rest = [i for i in order if i not in first]
        order = sorted((first + rest)[:CHECK_ROWS])
    table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
    for title in ("check", "value", "threshold", "verdict", "failing"):
        table.add_column(title, justify="right" if title == "failing" else "left", no_wrap=True)
    for check in (checks[i] for i in order):
        value, threshold = check.numbers()
        verdict = Text(check.verdict, style=VERDICT_STYLE.get(check.verdict, ""))
        cells = (Text(check.label), Text(value), Text(threshold))
        table.add_row(*cells, verdict, Text(str(check.failing)))
    if len(order) < len(checks):
        hidden = [c for i, c in enumerate(checks) if i not in order]
        summary = progress_mod.CanaryView(checks=hidden).summary()
        table.add_row(Text(f"{len(hidden)} more", style="dim"), "", "", Text(summary, style="dim"))
    return table


def open_log(root: Path, setting: str | None, run_id: str) -> RunLog:
    """The run's log file, in :func:`bgdeploy.core.runlog.log_directory`."""
    return RunLog(log_directory(root, setting), run_id)


def for_run(setting: str | None, quiet: bool, verbose: bool, run_id: str = "") -> RunOutput:
    """The output of a new run (a fresh run id unless given), its log in the deploy
    repository's ``run_log_dir`` (:func:`open_log`); after the inventory was loaded (its
    secrets are then known to the log's redactor)."""
    from bgdeploy.core import lock
    from bgdeploy.core.settings import ROOT

    log = open_log(ROOT, setting, run_id or lock.new_run_id())
    return RunOutput(log, choose_mode(quiet), verbose)


class RunOutput:
    """The screen and the log file of one run (a :class:`bgdeploy.core.progress.RunObserver`;
    :meth:`progress` is its :data:`bgdeploy.core.progress.Progress`). Use it as a context
    manager: the live view is drawn inside it and left on the screen as it ended."""

    def __init__(
        self,
        log: RunLog | None,
        mode: str = "plain",
        verbose: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        self.runlog = log
        self.mode = mode
        self.verbose = verbose
        self.stream = sys.stderr if stream is None else stream
        self.view = progress_mod.FleetView()
        self._lock = threading.RLock()
        """The view's state (drawn by rich's refresh thread, changed by the run's threads)."""
        self._screen = threading.RLock()
        """The order of the lines printed (taken before ``_lock``, never inside it)."""
        self._live: Any = None
        self._console: Any = None
        self.trouble: list[str] = []

    # The run's side -------------------------------------------------------------------

    def event(self, event: progress_mod.Event) -> None:
        with self._screen:
            self._show(self._take_event(event))

    def _take_event(self, event: progress_mod.Event) -> str | None:
        with self._lock:
            # Every host starts a stage: one line for it.
            repeated = event.get("kind") == "stage" and event.get("name") == self.view.stage
            self.view.apply(event)
            if repeated:
                return None
            line = progress_mod.plain_line(event, self.view)
            if event.get("kind") == "say":  # pyinfra printed it too: in the log already
                if self.mode == "live" and not self.verbose:
                    return f"  {event.get('text') or ''}"
                if self.mode == "plain" and not self.verbose:
                    return line
                return None
            if self.runlog is not None:
                logged = line or progress_mod.plain_line(event)
                if logged is not None:
                    self.runlog.write(logged)
            return line if self.mode == "plain" else None

    def log(self, line: str) -> None:
        """One line of pyinfra's log: to the file, and on screen with ``--verbose``."""
        clean = _ANSI.sub("", line)
        with self._screen:
            with self._lock:
                if _TROUBLE.search(clean):
                    self.trouble = [*self.trouble[-(EXCERPT - 1) :], clean]
                if self.runlog is not None:
                    self.runlog.write(clean)
            self._show(clean if self.verbose and self.mode != "quiet" else None)

    def progress(self, line: str) -> None:
        """One of bgdeploy's own lines (a notification, a hook, a recovery step)."""
        with self._screen:
            with self._lock:
                self.view.activity = line
                if self.runlog is not None:
                    self.runlog.note(line)
            if self.mode == "live":
                self._show(f"  {line}")
            elif self.mode == "plain":
                self._show(f"{progress_mod.clock(time.time())} {line}")

    def say(self, line: str) -> None:
        """A line the operator always sees (but with ``--quiet``), logged too."""
        with self._screen:
            with self._lock:
                if self.runlog is not None:
                    self.runlog.note(line)
            self._show(line if self.mode != "quiet" else None)

    def record(self, text: str) -> None:
        """Text for the log file only (the final table, the JSON)."""
        if self.runlog is not None:
            self.runlog.write(text)

    def _show(self, text: str | None) -> None:
        """Print ``text`` (None: nothing) above the live view, or on the stream. Called
        holding ``_screen`` (the lines' order) but never the view's ``_lock``: printing above
        a live view takes rich's lock, which its refresh holds while it draws the view (and
        takes ``_lock``); holding both the other way round hung a run."""
        if text is None:
            return
        live = self._live
        if live is not None:
            live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    # Drawing --------------------------------------------------------------------------

    def render(self) -> Any:
        """The live view: the stage, then a line per host, then the canary's window while
        one is watched (a rich renderable)."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            rows = self.view.rows()
            failed = {h.name for h in self.view.hosts.values() if h.failed or h.problem}
            stage = self.view.stage_line()
            canary = self.view.canary
            if self.view.ended and not rows:  # a run without hosts' lines: its lines say it
                return Text("")
        table = Table.grid(padding=(0, 2))
        for _ in range(4):
            table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis")
        for host, step, counts, seconds, problem in rows:
            table.add_row(
                Text(host, style="bold red" if host in failed else "bold"),
                Text(step, style="green" if step == "done" else ""),
                Text(counts, style="dim"),
                Text(seconds, style="dim"),
                Text(problem, style="red"),
            )
        if canary is None:
            return Group(Text(stage, style="bold cyan"), table)
        return Group(Text(stage, style="bold cyan"), table, Text(""), canary_panel(canary))

    def __enter__(self) -> RunOutput:
        self.start()
        return self

    def start(self) -> None:
        """Start drawing the live view (in ``live`` mode; again after :meth:`pause`)."""
        if self.mode == "live" and self._live is None:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream, force_terminal=True)
            self._live = Live(
                get_renderable=self.render,
                console=self._console,
                refresh_per_second=4,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def pause(self) -> None:
        """Stop redrawing, the view left on the screen as it is (to ask a question below)."""
        with self._screen:  # no line printed half way
            with self._lock:
                live, self._live = self._live, None
            if live is not None:
                live.refresh()
                live.stop()

    def stop(self) -> None:
        """Leave the live view as it ended (every host's last state) and stop redrawing.
        When a host failed, pyinfra's last lines about errors follow (unless ``--verbose``
        showed them all already): the log file has the rest."""
        with self._lock:
            self.view.finish()
            failed = any(line.failed for line in self.view.hosts.values())
            excerpt, self.trouble = self.trouble, []
        self.pause()
        if failed and excerpt and not self.verbose and self.mode != "quiet":
            with self._screen:
                self._show("pyinfra's last lines about errors (all of it is in the log):")
                for line in excerpt:
                    self._show(f"  {line.strip()}")

    def close(self, announce: bool = True) -> None:
        """Stop drawing and close the log, naming it (unless quiet or not ``announce``)."""
        self.stop()
        if self.runlog is None:
            return
        self.runlog.close()
        if announce and self.mode != "quiet":
            self.stream.write(f"log: {self.runlog.display_path()}\n")
            self.stream.flush()
