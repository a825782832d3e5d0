"""Use cases: each function takes plain values, runs one transaction and returns domain objects."""
