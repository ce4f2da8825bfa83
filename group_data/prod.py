"""Production: the runbook's deployment schedule and blackout periods.

Regular deploys Tuesday to Thursday, 10:00 to 16:00 Asia/Dhaka. Outside that, or in a
blackout, a deploy is refused (exit 3) unless it is an emergency with a reason
(`bgdeploy deploy prod --emergency --reason "..."` or `--data emergency_reason=...`).
"""

production = True
monitor_window = 60
health_deadline = 90

timezone = "Asia/Dhaka"
deploy_windows = [{"days": ["tue", "wed", "thu"], "start": "10:00", "end": "16:00"}]
blackouts = [
    # The runbook: Friday evenings (the weekend starts) and after 18:00 (limited support).
    {"name": "Friday evening", "days": ["fri"], "start": "16:00", "end": "24:00"},
    {"name": "After hours", "start": "18:00", "end": "24:00"},
    # Bangladesh's fixed-date public holidays.
    {"name": "Language Martyrs' Day", "annual": "02-21"},
    {"name": "Independence Day", "annual": "03-26"},
    {"name": "Pohela Boishakh", "annual": "04-14"},
    {"name": "May Day", "annual": "05-01"},
    {"name": "Victory Day", "annual": "12-16"},
    # Eid holidays and the visa rush around them (moon-sighting dates: review each year).
    {"name": "Eid al-Fitr visa rush 2026", "start": "2026-03-15", "end": "2026-03-24"},
    {"name": "Eid al-Adha visa rush 2026", "start": "2026-05-22", "end": "2026-05-31"},
    {"name": "Eid al-Fitr visa rush 2027", "start": "2027-03-05", "end": "2027-03-14"},
    {"name": "Eid al-Adha visa rush 2027", "start": "2027-05-12", "end": "2027-05-21"},
]

# One known_hosts file per inventory: an unknown or changed host key stops the run.
ssh_known_hosts_file = "inventories/known_hosts/prod"
