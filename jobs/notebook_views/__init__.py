"""What the Databricks notebooks show, as functions they call."""
