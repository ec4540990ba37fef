"""The runtime every job shares: entry points and flags, the Spark session, Delta tables, fault injection, dates, Arrow arrays."""
