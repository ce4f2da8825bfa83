"""Sandbox timings: target image build cold and warm, and fleet start-to-ready time.

    .venv/bin/python bench/sandbox.py            # warm rebuild, fleets of 2 and 4 web hosts
    .venv/bin/python bench/sandbox.py --cold     # also a cold build (removes the images first:
                                                 # about 5 minutes, downloads the packages again)

Prints one line per figure; asserts nothing. Absolute times on a shared machine are noisy:
compare figures from one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bgdeploy import sandbox
from bgdeploy.sandbox import image


def timed(label: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    started = time.monotonic()
    result = func(*args, **kwargs)
    print(f"{label:<44} {time.monotonic() - started:8.1f} s", flush=True)
    return result


def remove_images(client: Any) -> None:
    for name in (image.image_tag(), image.DEBOOTSTRAP_BASE):
        try:
            client.images.remove(name, force=True)
        except Exception as error:
            print(f"(not removed: {name}: {type(error).__name__})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a build from nothing")
    parser.add_argument("--web", type=int, nargs="*", default=[2, 4], help="fleet sizes")
    args = parser.parse_args()
    os.environ.setdefault("BGDEPLOY_STATE_DIR", tempfile.mkdtemp(prefix="bgdeploy-bench-"))
    client = sandbox.docker_client()
    if args.cold:
        remove_images(client)
        timed("image build, cold (debootstrap + packages)", image.ensure_image, client)
    timed("image check, recipe unchanged (no build)", image.ensure_image, client)
    timed("image rebuild, warm (layer cache)", image.ensure_image, client, force=True)
    for web in args.web:
        name = f"bench-{web}"
        sandbox.down(name, client=client)
        try:
            timed(f"fleet start to ready, {web} web + 1 db", sandbox.up, name, web, client=client)
        finally:
            sandbox.down(name, client=client)


if __name__ == "__main__":
    main()
