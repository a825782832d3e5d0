"""Compiled statements run on the database driver's own cursor: plumbing that the ledger and the
gateway both use for their hot paths, knowing neither."""
