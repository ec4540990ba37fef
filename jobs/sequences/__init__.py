"""Lifelong sequences: events into per-user sequences and samples, the time split, user partitions."""
