"""The local sandbox fleet (`bgdeploy sandbox up`): fast, no deploy window."""

from bgdeploy.core.errors import ConfigError
from bgdeploy.sandbox import CONTAINER_REPOSITORY, current_name, load_state

repository = CONTAINER_REPOSITORY
ref = "v1"
production = False
server_name = "_"
# The containers reach the preview listener from the Docker network, the operator through
# the port published on 127.0.0.1 (which arrives from the network's gateway).
preview_allow = ["127.0.0.1/32", "172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8"]
# bgdeploy ship sandbox: a second sandbox stands in for staging (inventories/sandbox_staging.py).
staging_environment = "sandbox_staging"
# Try things freely: no approval is asked for (prod keeps the runbook's rules, group_data/all.py).
approvals = None
fpm_max_children = 4
process_control_timeout = 10
app_url = "http://localhost"
log_level = "debug"
log_retention_days = 3
queue_workers = 1
health_deadline = 20
health_interval = 0.5
monitor_window = 5
min_free_disk_mb = 64
snapshot_keep = 3
# Canary: a window of seconds; the sandbox's Prometheus when it runs with --monitoring.
canary_window = 20
canary_interval = 5
canary_probe_rate = 5.0
# The sandbox's containers share the machine's CPUs with the tests (a healthy release's p95
# reached 3 s under a loaded CI run): its absolute latency says nothing, only a failure to
# answer does.
canary_max_p95_seconds = 30.0
# The comparison with the live colour is the same machine at the same time, so it stays
# meaningful here; a 20 s window of test traffic holds fewer requests than production's 5 minutes.
canary_min_requests = 50
try:
    _state = load_state(current_name())
except ConfigError:  # no sandbox up: the inventory says so itself
    _state = None
prometheus_url = _state.prometheus_url if _state else None
# `bgdeploy sandbox up --no-repository`: the web hosts have no repository to fetch from; the
# operator's machine fetches the sandbox's app.git and pushes each release to them.
if _state is not None and not _state.repository:
    repository = _state.app_repository
    code_delivery = "push"
del _state  # not a setting
