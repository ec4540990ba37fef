"""Samples from time-sorted behaviours and the fixed-length model inputs cut from a history."""
