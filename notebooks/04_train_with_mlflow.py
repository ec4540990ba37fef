# Databricks notebook source
# MAGIC %md
# MAGIC # 04 · Train with MLflow
# MAGIC
# MAGIC `jobs.training.train.train`: the configured model (`model.name`, default R2LED) on
# MAGIC `training_examples` through Petastorm, early stopping on validation AUC, test metrics, and
# MAGIC an MLflow run with the model registered under `registry.model_name`. Change the model or an
# MAGIC ablation through `overrides`, e.g. `model.name=twin` or `model.r2led.gate=id_only, training.epochs=5`.

# COMMAND ----------

import pandas as pd

from jobs.notebook_views.context import STANDARD_WIDGETS, notebook_config, notebook_spark, widget_values
from jobs.notebook_views.refinement import refinement_view
from jobs.training.train import train
from r2led_model.evaluation.plots import refinement_figure

widgets = widget_values(dbutils, STANDARD_WIDGETS)

# COMMAND ----------

config = notebook_config(widgets["env"], widgets["overrides"], widgets["date"], widgets["config"])
spark = notebook_spark(config)

# COMMAND ----------

result = train(spark, config)
print(f"registered {result.model_name} version {result.version}; MLflow run id {result.run_id}; "
      f"best epoch {result.best_epoch}")

# COMMAND ----------

# MAGIC %md ## Validation and test metrics (AUC, GAUC, LogLoss)

# COMMAND ----------

metrics = pd.DataFrame([{"split": "valid", **result.valid}, {"split": "test", **result.test}])
display(metrics)

# COMMAND ----------

# MAGIC %md ## What R2LED's refinement does, by target warmth
# MAGIC
# MAGIC The SID-level gate's mean ID weight (a gate that chooses trusts the ID more for targets with more
# MAGIC training impressions; none for the default `gate: sum`, one mix for every item) and each route's share
# MAGIC of the route fusion, on the test split. Also in the run as
# MAGIC `diagnostics.json` and `plots/refinement.png`. Empty for the baselines.

# COMMAND ----------

display(refinement_view(result.diagnostics))
if result.diagnostics:
    display(refinement_figure(result.diagnostics))
