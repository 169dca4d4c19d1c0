"""What every job shares: dead letters (and, as the jobs arrive, parsing, dedup and I/O)."""
