"""``make eval``: answer quality on public data nobody on the team wrote."""
