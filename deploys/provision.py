"""Server setup: the runbook's prerequisites, declared once for every host of an inventory.

    pyinfra inventories/ENV.py deploys/provision.py      (or: bgdeploy provision ENV)

Hosts in the group ``db`` become the database server (PostgreSQL and Redis on the private
network, the snapshot directory); hosts in ``web`` become web servers (nginx with the public
and the preview listener, a php-fpm pool per colour, the app layout and shared/.env, queue
workers, the scheduler, logrotate). A host in both groups is a single-server install.
Running it again changes nothing unless a setting, a secret or the inventory changed.
"""

from pyinfra import host, inventory

from bgdeploy.strategies import provision

# Settings, secrets (BGDEPLOY_* variables) and every host's private address are checked
# before anything is touched: a wrong value or a missing secret stops the run here.
settings, secrets, addresses = provision.checked_inputs(inventory)

# Roles come from the inventory groups; a single-server install is in both.
if "db" in host.groups:
    provision.database_server(settings, addresses, secrets, _sudo=True)

if "web" in host.groups:
    provision.web_server(settings, addresses, secrets, _sudo=True)
