"""Score updates: the one path by which a score changes, and the audit trail it leaves."""
