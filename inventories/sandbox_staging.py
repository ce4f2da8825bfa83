"""A second local sandbox standing in for staging (`bgdeploy ship sandbox`).

Named by BGDEPLOY_STAGING_SANDBOX (default: the sandbox's name + "-staging"; start it with
`bgdeploy sandbox up --name default-staging`). Its hosts are in the group "sandbox" too, so
group_data/sandbox.py's settings apply to them; their own Prometheus (if any) is theirs.
"""

from bgdeploy.sandbox import export_secrets, inventory_hosts, load_state, staging_name

_name = staging_name()
_groups = inventory_hosts(_name)
_prometheus = load_state(_name).prometheus_url
for _members in _groups.values():
    for _host, _data in _members:
        _data["prometheus_url"] = _prometheus
export_secrets(_name)

web = _groups["web"]
db = _groups["db"]
sandbox = web + db
