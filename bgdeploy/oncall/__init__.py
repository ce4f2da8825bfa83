"""The on-call engineer's tasks: emergencies, feature flags, snapshots, history,
postmortems and notifications."""
