"""Reaching the hosts: the inventory (one source of truth for both engines), Fabric
connections with strict host keys, the pyinfra runner, the fleet-wide deploy lock."""
