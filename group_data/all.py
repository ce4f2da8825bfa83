"""Defaults for every environment; prod.py, staging.py and sandbox.py override them.

Every key here is read through bgdeploy.core.settings, which validates it before any host is
touched. Secrets (APP_KEY, database and Redis passwords, API token, webhook URLs) never sit in
group_data: they come from the BGDEPLOY_* environment variables.
"""

# The application
app_name = "bideshgomon"
app_root = "/var/www/bideshgomon"
repository = "https://github.com/bideshgomon/platform.git"
ref = "main"
production = True
# How a release's commit reaches the web hosts:
#   "fetch": each web host fetches `repository` itself (it needs a credential for it: a deploy
#            key, or the operator's key through ssh_forward_agent below);
#   "push":  the operator's machine fetches `repository`, resolves the ref once and sends each
#            web host the commit over SSH (a git bundle of what it lacks): the hosts need no
#            credential and no route to the repository.
code_delivery = "fetch"

# Server software and users
php_version = "8.2"
deploy_user = "deploy"
php_fpm_user = "www-data"
server_name = "bideshgomon.com"
public_port = 80
preview_port = 8080
# Who may reach the preview listener (smoke tests of the idle colour before a switch).
preview_allow = ["127.0.0.1/32"]
fpm_max_children = 8
# Seconds php-fpm lets requests in flight finish on a reload (0 would kill them).
process_control_timeout = 30
queue_workers = 2
php_fpm_group = "www-data"
# php-fpm process manager of each colour's pool: static, dynamic or ondemand.
fpm_pm = "dynamic"
# Requests a php-fpm worker serves before it is replaced (0: never).
fpm_max_requests = 500
# Seconds a request may take (nginx fastcgi_read_timeout, php-fpm request_terminate_timeout).
request_timeout = 60
# Largest request body nginx accepts (uploads of visa documents), in MB.
client_max_body_mb = 20
app_url = "https://bideshgomon.com"
log_level = "info"
# Days of application logs logrotate keeps (shared/storage/logs/*.log, rotated daily).
log_retention_days = 14
postgres_version = "15"

# Health verification after a deploy
health_path = "/api/health"
health_deadline = 60
health_interval = 2.0
monitor_window = 60
auto_rollback = True
# Canary deploys (bgdeploy deploy ENV --canary PCT): the metric gate promotes only while the
# new colour's error rate <= 1 %, p95 latency <= 500 ms and no 5xx, over the window (the
# runbook's 5 minutes). With prometheus_url the gate asks Prometheus, per colour; without
# (None) it probes the new colour itself at canary_probe_rate requests/s per web host.
canary_window = 300
canary_max_error_rate = 0.01
canary_max_p95_seconds = 0.5
canary_max_5xx = 0
canary_probe_rate = 2.0
prometheus_url = None
# The gate evaluates the window so far every canary_interval seconds (bgdeploy/checks/window.py):
# a check failing canary_failure_limit evaluations in a row sends every client back at once;
# a canary is promoted only by the evaluation over the whole window.
canary_interval = 30
canary_failure_limit = 3
# Canary analysis (bgdeploy/checks/baseline.py): besides those limits, the new colour is compared
# with the live colour over the same window, overall and per route (Prometheus) or per colour
# probed alike (probes). Error rate: a one-sided Fisher exact test of the canary's errors against
# the baseline's fails below canary_significance (shared among the comparisons). p50, p95, p99: at
# most canary_max_latency_increase above the baseline's (0.2: +20 %), differences under
# canary_latency_slack seconds never fail. Each side needs canary_min_requests requests (a
# quantile also 5 above it: p99 500), else the comparison is "not evaluated"; the overall error
# comparison not evaluated fails the gate (like no traffic). canary_baseline = False: limits only.
canary_baseline = True
canary_min_requests = 100
canary_significance = 0.01
canary_max_latency_increase = 0.2
canary_latency_slack = 0.002
# Canary trends (bgdeploy/checks/trends.py, with Prometheus only): the queue backing up (pending
# jobs more than canary_max_queue_growth above the window's start, and rising) and the canary's
# php-fpm memory per worker more than canary_max_memory_increase above the live colour's (0.5:
# +50 %) send the canary back.
canary_max_queue_growth = 100
canary_max_memory_increase = 0.5
# What `npm run build` writes, relative to a checkout. With several web hosts, one host builds
# a release's assets and the others receive a checksummed copy (not 8 builds on 8 hosts);
# [] makes every host run npm ci and npm run build itself.
asset_paths = ["public/build"]
# Hosts per batch in a rolling deploy (None: all web hosts at once).
rolling_batch = None
# The web host that runs migrations (None: the first web host of the inventory).
migrate_host = None

# Database and cache
db_name = "bideshgomon"
db_user = "bideshgomon"
db_port = 5432
redis_port = 6379
backups_dir = "/var/backups/bideshgomon"
snapshot_keep = 5
min_free_disk_mb = 1024

# On the operator's machine: where each run's full log goes (RUN_ID.log). None is
# .bgdeploy/runs in the deploy repository; BGDEPLOY_RUN_LOG_DIR overrides it.
run_log_dir = None

# The automatic pipeline (`bgdeploy ship ENV --ref REF`): the environment deployed and checked
# first (None: ship goes straight to the canary), the commands that check it from this
# machine (argv lists or strings; told BGDEPLOY_STAGING_URL, BGDEPLOY_STAGING_HOSTS,
# BGDEPLOY_RELEASE...; exit 0 passes) and their time limit, and the canary's share.
staging_environment = None
staging_checks = []
staging_check_timeout = 1800
canary_percent = 5

# Approvals (bgdeploy/core/approvals.py), the runbook's rules: a regular deploy needs 2
# approvals (`--approved-by NAME[,NAME]` or the commit's Reviewed-by:/Approved-by: trailers);
# a hotfix (`--hotfix`) 1 and a rollback plan (`--rollback-plan TEXT`); an emergency
# (`--emergency --severity P0..P3 --reason TEXT`) at P0 nothing more, at P1-P3 an approver
# named with --approved-by. Hotfixes and emergencies leave a review due within 24 h
# (`bgdeploy review ENV RUN_ID`). None: no approval is asked for.
approvals = {
    "regular": 2,
    "hotfix": 1,
    "hotfix_rollback_plan": True,
    "emergency_any_time": ["P0"],
    "emergency_approvals": 1,
    "review_within_hours": 24,
    "trailers": ["Reviewed-by", "Approved-by"],
}

# Deploy windows: None means a deploy is allowed at any time (see prod.py).
deploy_windows = None
blackouts = []
timezone = "Asia/Dhaka"

# SSH: host keys are always checked against a known_hosts file (never accepted blindly).
ssh_strict_host_key_checking = "yes"
# Forward the operator's SSH agent to the hosts (pyinfra and Fabric), so that hosts that fetch
# (code_delivery = "fetch") reach a private repository with the operator's key.
ssh_forward_agent = False
