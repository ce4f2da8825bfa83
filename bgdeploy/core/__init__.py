"""Settings, errors, refs, the journal, lock rules, deploy windows, progress, reports:
what every layer above uses. Imports nothing of bgdeploy's outside ``core``."""
