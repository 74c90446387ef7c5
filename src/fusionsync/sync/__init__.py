"""The sync engine: scan → plan → execute → report."""
