# Databricks notebook source
# MAGIC %md
# MAGIC # 03 · One user's retrieval
# MAGIC
# MAGIC For one user (widget `user_id`; empty: the first user with samples) and one of their samples
# MAGIC (widget `sample_id`; empty: the one with the most candidates), the behaviours each route
# MAGIC retrieved from `route_candidates`, with their SIDs beside the target's and the length of the
# MAGIC SID prefix they share with it, then the sample's row of `training_examples`.

# COMMAND ----------

from jobs.notebook_views.context import STANDARD_WIDGETS, notebook_config, notebook_spark, optional_id, widget_values
from jobs.notebook_views.retrieval import (resolve_user_id, route_summary, training_examples_of, user_retrieval,
                                           user_samples, user_sequence)
from jobs.runtime.tables import TableStore

widgets = widget_values(dbutils, {**STANDARD_WIDGETS, "user_id": "", "sample_id": ""})

# COMMAND ----------

config = notebook_config(widgets["env"], widgets["overrides"], widgets["date"], widgets["config"])
spark = notebook_spark(config)
store = TableStore(spark, config.tables)
user_id = resolve_user_id(spark, config, widgets["user_id"])
print(f"user {user_id}")

# COMMAND ----------

# MAGIC %md ## The user's samples and stored sequence

# COMMAND ----------

samples = user_samples(store, user_id)
display(samples)
display(user_sequence(store, user_id))

# COMMAND ----------

# MAGIC %md ## Route candidates of one sample

# COMMAND ----------

candidates = user_retrieval(spark, config, user_id, optional_id(widgets["sample_id"], "sample_id"))
display(candidates)
per_route = route_summary(candidates)
display(per_route)

# COMMAND ----------

# MAGIC %md ## The same sample in `training_examples`

# COMMAND ----------

example = training_examples_of(store, candidates)
display(example)
