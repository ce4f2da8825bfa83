"""Production: the runbook's deployment schedule and blackout periods.

Regular deploys Tuesday to Thursday, 10:00 to 16:00 Asia/Dhaka. Outside that, or in a
blackout, a deploy is refused (exit 3) unless it is an emergency with a reason
(`bgdeploy deploy prod --emergency --severity P0 --reason "..."` or `--data
emergency_reason=... --data severity=P0`). Who must approve each kind of deploy: `approvals`,
group_data/all.py (the runbook's rules).
"""

production = True
monitor_window = 60
# bgdeploy ship prod: staging first (blue-green, smoke tests, the checks below), then a 5 %
# canary here. Add the app's E2E suite, e.g. ["npm", "run", "e2e", "--", "--base-url", ...].
staging_environment = "staging"
health_deadline = 90

timezone = "Asia/Dhaka"
deploy_windows = [{"days": ["tue", "wed", "thu"], "start": "10:00", "end": "16:00"}]
blackouts = [
    # The runbook: Friday evenings (the weekend starts) and after 18:00 (limited support).
    {"name": "Friday evening", "days": ["fri"], "start": "16:00", "end": "24:00"},
    {"name": "After hours", "start": "18:00", "end": "24:00"},
    # Government holidays (Bangladesh): every public holiday of every year, fixed and Islamic,
    # from the holidays calendar (dates it marks "(estimated)" until they are announced).
    {"calendar": "BD"},
    # High-traffic events: the Eid visa rush, 5 days before to 4 days after each Eid, any year.
    {
        "name": "Eid visa rush",
        "calendar": "BD",
        "around": ["Eid al-Fitr", "Eid al-Adha"],
        "before": 5,
        "after": 4,
    },
    # What no calendar computes: the holidays of the Hindu and Buddhist lunar calendars, as
    # the government lists them each year (confirm against its gazette; add the next year's).
    {"name": "Buddha Purnima", "start": "2026-05-01"},
    {"name": "Janmashtami", "start": "2026-09-04"},
    {"name": "Durga Puja (Bijoya Dashami)", "start": "2026-10-20"},
]

# One known_hosts file per inventory: an unknown or changed host key stops the run.
ssh_known_hosts_file = "inventories/known_hosts/prod"
