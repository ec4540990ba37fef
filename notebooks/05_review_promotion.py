# Databricks notebook source
# MAGIC %md
# MAGIC # 05 · Review promotion
# MAGIC
# MAGIC Widget `action`: `review` (default) shows the decision `r2led promote` last recorded on the
# MAGIC challenger (promoted or not, why, the registered test metrics); `promote` runs
# MAGIC `jobs.registry.promote.promote` now: the newest version becomes the challenger and replaces the champion
# MAGIC only if it wins on the same test rows. Then the registry's aliases.

# COMMAND ----------

import pandas as pd

from jobs.notebook_views.context import STANDARD_WIDGETS, notebook_config, notebook_spark, widget_values
from jobs.notebook_views.promotion import promotion_decision, registry_state

dbutils.widgets.dropdown("action", "review", ["review", "promote"], "action")
widgets = widget_values(dbutils, STANDARD_WIDGETS)
action = dbutils.widgets.get("action")

# COMMAND ----------

config = notebook_config(widgets["env"], widgets["overrides"], widgets["date"], widgets["config"])
spark = notebook_spark(config)

# COMMAND ----------

decision = promotion_decision(spark, config, action)
print(f"{config.registry.model_name} version {decision.challenger_version}: "
      f"{'PROMOTED to champion' if decision.promoted else 'NOT promoted'} "
      f"(champion before: {decision.champion_version or 'none'})")
print(f"reason: {decision.reason}")

# COMMAND ----------

# MAGIC %md ## Metrics behind the decision

# COMMAND ----------

metrics = pd.DataFrame(sorted(decision.metrics.items()), columns=["metric", "value"])
display(metrics)

# COMMAND ----------

# MAGIC %md ## Registry aliases now

# COMMAND ----------

registry = registry_state(config)
aliases = pd.DataFrame([("champion", registry.champion), ("challenger", registry.challenger),
                        ("previous_champion", registry.previous_champion)], columns=["alias", "version"])
display(aliases)
