"""bgdeploy: deploys the BideshGomon platform safely, and brings it back when something breaks.

The package is importable without side effects: every module is one concept (settings, the
sandbox fleet, the target image, deploy windows, the migration scanner, ...), and the command
line in :mod:`bgdeploy.cli` is a thin layer over them.
"""

__version__ = "0.1.0"
