"""The local sandbox fleet, read from the state of `bgdeploy sandbox up`.

The sandbox is named by BGDEPLOY_SANDBOX (default "default"). Hosts are reached on
127.0.0.1 through their published SSH ports with strict host-key checking. The sandbox's own
secrets become the BGDEPLOY_* variables unless they are already set.
"""

from bgdeploy.sandbox import current_name, export_secrets, inventory_hosts

_groups = inventory_hosts(current_name())
export_secrets(current_name())

web = _groups["web"]
db = _groups["db"]
