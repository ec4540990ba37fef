# Databricks notebook source
# MAGIC %md
# MAGIC # 02 · Inspect Semantic IDs
# MAGIC
# MAGIC The current `item_sids` judged by `jobs.sids.report_sids.build_sid_report`: per-level usage and
# MAGIC perplexity, collisions before and after the dedup digit, the biggest prefixes with example
# MAGIC item texts, NMI against the planted taxonomy (synthetic data), and the usage plots.
# MAGIC Read-only: `r2led report sids` also writes the report to disk and MLflow.

# COMMAND ----------

from jobs.notebook_views.context import STANDARD_WIDGETS, notebook_config, notebook_spark, widget_values
from jobs.notebook_views.sids import sid_metrics_frame, sid_prefix_examples
from jobs.sids.report_sids import build_sid_report
from r2led_model.sids.sid_report import plot_prefix_sizes, plot_usage

widgets = widget_values(dbutils, STANDARD_WIDGETS)

# COMMAND ----------

config = notebook_config(widgets["env"], widgets["overrides"], widgets["date"], widgets["config"])
spark = notebook_spark(config)
report, semantic_codes = build_sid_report(spark, config)
print(report.summary())

# COMMAND ----------

# MAGIC %md ## Metrics

# COMMAND ----------

metrics = sid_metrics_frame(report)
display(metrics)

# COMMAND ----------

# MAGIC %md ## Biggest prefixes per level, with example items

# COMMAND ----------

prefixes = sid_prefix_examples(report)
display(prefixes)

# COMMAND ----------

# MAGIC %md ## Code usage and prefix sizes

# COMMAND ----------

usage_figure = plot_usage(semantic_codes, config.codebook.codebook_size)
display(usage_figure)

# COMMAND ----------

prefix_figure = plot_prefix_sizes(semantic_codes)
display(prefix_figure)
