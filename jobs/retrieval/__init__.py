"""Multi-route retrieval: collaborative vectors (ALS + SimHash), route candidates, their column conventions and report."""
