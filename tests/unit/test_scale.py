"""`bgdeploy scale` without Docker: the levers and their ranges, the scale file, what it
overrides, and the files it writes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import load_group_data

from bgdeploy.cli import cli
from bgdeploy.core import settings
from bgdeploy.core.errors import ConfigError
from bgdeploy.oncall import scale


@pytest.fixture
def s() -> settings.Settings:
    return settings.from_data(load_group_data("prod"), "prod")


@pytest.mark.parametrize(
    ("what", "count"),
    [
        ("workers", 0),
        ("workers", 33),
        ("php-fpm", 0),
        ("php-fpm", 257),
        ("cpus", 2),
        ("workers", True),
    ],
)
def test_out_of_range_is_refused(what: str, count: int) -> None:
    with pytest.raises(ConfigError):
        scale.check(what, count)


def test_bad_count_exits_2_before_connecting() -> None:
    result = CliRunner().invoke(cli, ["scale", "prod", "workers", "40"])
    assert result.exit_code == 2 and "from 1 to 32" in result.output


def test_the_scale_file_overrides_group_data(s: settings.Settings) -> None:
    kept = scale.parse("workers=4\nphp_fpm_max_children=9\n# junk\nbogus\nworkers_x=a\n")
    assert kept == {"workers": 4, "php_fpm_max_children": 9}
    assert scale.overrides(s, kept) == {
        "queue_workers": (s.queue_workers, 4),
        "fpm_max_children": (s.fpm_max_children, 9),
    }
    scaled = scale.apply(s, kept)
    assert (scaled.queue_workers, scaled.fpm_max_children) == (4, 9)
    assert scale.apply(s, {}) is s
    assert scale.overrides(s, {"workers": 999}) == {}  # out of range: ignored, not applied


def test_the_files_written_carry_the_count(s: settings.Settings) -> None:
    workers = scale.config_files(scale.LEVERS["workers"], scale.apply(s, {"workers": 5}))
    ((path, text),) = workers.items()
    assert path.endswith("-worker.conf") and "numprocs=5" in text
    pools = scale.config_files(scale.LEVERS["php-fpm"], scale.apply(s, {"php_fpm_max_children": 7}))
    assert len(pools) == 2 and all("pm.max_children = 7" in text for text in pools.values())


def test_status_shows_what_was_scaled() -> None:
    from bgdeploy.fleet import colours
    from bgdeploy.strategies import status

    facts = colours.parse_facts(
        "web1",
        "current=blue\nlive=blue\nidle=green\nblue_head=abc\nblue_built=abc\n"
        "scale=php_fpm_max_children=6 workers=4 \n",
    )
    assert facts.scale == "php_fpm_max_children=6 workers=4"
    table = status.FleetStatus({"web1": facts}, "abc", {"web1": False}).format_table()
    assert table.splitlines()[1].endswith("scaled: php_fpm_max_children=6 workers=4")
