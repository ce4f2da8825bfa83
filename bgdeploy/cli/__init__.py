"""The ``bgdeploy`` command line: ``bgdeploy = "bgdeploy.cli:main"``.

:mod:`bgdeploy.cli.main` holds the root group and what the commands share; each command
group has a module of its own (``deploy``, ``rollback``, ``switch``, ``status``, ``history``,
``snapshot``, ``db``, ``flags``, ``emergency``, ``preflight``, ``window``, ``unlock``,
``provision``, ``sandbox``, ``scale``, ``review``). They parse options, call the library and print.
"""

from bgdeploy.cli.main import cli, main

__all__ = ["cli", "main"]
