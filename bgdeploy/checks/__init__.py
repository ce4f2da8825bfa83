"""What is checked before and after a change: the preflight checklist, smoke tests,
health, the canary's metric gate, the migration scanner, the database's fingerprint."""
