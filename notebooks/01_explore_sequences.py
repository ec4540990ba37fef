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

from pyspark.sql import functions as F

from jobs.notebook_views.context import (STANDARD_WIDGETS, hist_len_buckets, notebook_config, notebook_spark, run_date,
                                         widget_values)
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

counts = spark.createDataFrame(
    [(name, store.read(name).count(), store.version(name)) for name in ("events", "samples", "user_sequences")],
    "table string, rows long, delta_version long")
display(counts)

# COMMAND ----------

# MAGIC %md ## Split sizes (samples, positives, users)

# COMMAND ----------

splits = (samples.groupBy("split")
          .agg(F.count("*").alias("samples"), F.sum("label").alias("positives"),
               F.countDistinct("user_id").alias("users"), F.avg("hist_len").alias("mean_hist_len"))
          .orderBy("split"))
display(splits)

# COMMAND ----------

# MAGIC %md ## `hist_len` distribution (power-of-two buckets, per split)

# COMMAND ----------

hist_len = hist_len_buckets(samples)
display(hist_len)

# COMMAND ----------

# MAGIC %md ## Stored sequence lengths and behaviours per day

# COMMAND ----------

lengths = sequences.select(F.min("length").alias("min"), F.expr("percentile_approx(length, 0.5)").alias("median"),
                           F.max("length").alias("max"), F.sum("dropped").alias("dropped_behaviours"))
display(lengths)
daily = events.groupBy("event_date").agg(F.count("*").alias("events"), F.countDistinct("user_id").alias("users"))
display(daily.orderBy("event_date"))

# COMMAND ----------

# MAGIC %md ## The `date` widget's day (empty when no date is set)

# COMMAND ----------

day_events = events.where(F.col("event_date") == F.lit(run_date(widgets["date"])).cast("date"))
display(day_events.groupBy("behavior").count().orderBy("behavior"))
