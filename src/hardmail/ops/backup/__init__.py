"""Backups that are proven to restore: the archive format (:mod:`.manifest`, :mod:`.archive`),
making full and incremental archives of a running server, verifying, restoring all or part,
the schedule and retention of scheduled backups, their health state, and the backup taken
before a schema upgrade. docs/backup.md and docs/upgrade.md describe them for admins.
"""
