# Databricks notebook source
# MAGIC %md
# MAGIC # 01 · Explore sequences
# MAGIC
# MAGIC Row counts of `events`, `samples` and `user_sequences`, split sizes and the `hist_len`
# MAGIC distribution (how much lifelong history each impression points at). Read-only.
# MAGIC
# MAGIC Widgets: `env` (conf/<env>.yaml), `date` (YYYY-MM-DD: also show that day's events; empty:
# MAGIC skip), `overrides` (`key=value` items, comma- or newline-separated, as `--set`).

# COMMAND ----------

from jobs.notebook_views.context import STANDARD_WIDGETS, notebook_config, notebook_spark, run_date, widget_values
from jobs.notebook_views.sequences import (behaviours_on, events_per_day, hist_len_buckets, split_sizes, stored_lengths,
                                           table_counts)
from jobs.runtime.tables import TableStore

widgets = widget_values(dbutils, STANDARD_WIDGETS)

# COMMAND ----------

config = notebook_config(widgets["env"], widgets["overrides"], widgets["date"], widgets["config"])
spark = notebook_spark(config)
store = TableStore(spark, config.tables)
events, samples, sequences = store.read("events"), store.read("samples"), store.read("user_sequences")

# COMMAND ----------

# MAGIC %md ## Row counts

# COMMAND ----------

counts = table_counts(spark, store)
display(counts)

# COMMAND ----------

# MAGIC %md ## Split sizes (samples, positives, users)

# COMMAND ----------

splits = split_sizes(samples)
display(splits)

# COMMAND ----------

# MAGIC %md ## `hist_len` distribution (power-of-two buckets, per split)

# COMMAND ----------

hist_len = hist_len_buckets(samples)
display(hist_len)

# COMMAND ----------

# MAGIC %md ## Stored sequence lengths and behaviours per day

# COMMAND ----------

lengths = stored_lengths(sequences)
display(lengths)
daily = events_per_day(events)
display(daily)

# COMMAND ----------

# MAGIC %md ## The `date` widget's day (empty when no date is set)

# COMMAND ----------

day_events = behaviours_on(events, run_date(widgets["date"]))
display(day_events)
