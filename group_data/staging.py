"""Staging: mirrors production, but may be reset and has no deploy window."""

production = False
server_name = "staging.bideshgomon.com"
app_url = "https://staging.bideshgomon.com"
monitor_window = 30
# The pipeline deploys main here after the merge: no approval beyond the merge's own review.
approvals = None
ssh_known_hosts_file = "inventories/known_hosts/staging"
