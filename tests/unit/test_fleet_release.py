"""fleet_release: which commit the fleet serves, so `bgdeploy status` can say who is
behind."""

from bgdeploy.fleet.colours import HostColours, fleet_release, other, parse_facts


def host(name: str, live: str, sha: str, built_at: int = 0, error: str = "") -> HostColours:
    return HostColours(
        name,
        current=live,
        live=live,
        idle=other(live),
        heads={live: sha},
        built={live: sha},
        built_at={live: built_at},
        error=error,
    )


def test_the_commit_most_hosts_serve() -> None:
    colours = {n: host(n, "blue", "a" * 40, 10) for n in ("web1", "web2")}
    colours["web3"] = host("web3", "blue", "b" * 40, 99)
    assert fleet_release(colours) == "a" * 40


def test_a_tie_goes_to_the_commit_built_last() -> None:
    colours = {"web1": host("web1", "blue", "a" * 40, 200), "web2": host("web2", "blue", "b" * 40)}
    assert fleet_release(colours) == "a" * 40


def test_unreadable_hosts_do_not_count() -> None:
    colours = {"web1": host("web1", "blue", "a" * 40, error="unreachable")}
    assert fleet_release(colours) is None


def test_parse_facts_reads_when_each_colour_was_built() -> None:
    found = parse_facts("web1", "blue_built=abc\nblue_built_at=1700000000\ngreen_built_at=\n")
    assert found.built_at == {"blue": 1700000000}
    assert found.built == {"blue": "abc"}
