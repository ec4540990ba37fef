"""R2LED's model package: what runs inside a Spark task, a trainer or a served model, by component.

  worlds/      synthetic worlds with known click probabilities, the oracle, the content-features reference
  sequences/   samples from time-sorted behaviours; the fixed-length inputs and their padding rules
  sids/        text encoder, RQ-VAE, the exported codebook and its versioned store, SID reports
  retrieval/   the routes' grammar, the vectorised multi-route kernel (and its naive reference), SimHash
  models/      R2LED and the baselines (DIN, DIN-long, SIM, ETA, SDIM, TWIN), their inputs and layers
  training/    the feed (Petastorm or Arrow), the loop, the optimiser, the equal-budget search
  evaluation/  AUC/GAUC/LogLoss, paired intervals, segments, plots, R2LED's refinement diagnostics
  tracking/    MLflow runs, the registered pyfunc model (from code) and the bundle it loads
  serving/     the request contract, the scorer and the serving catalogue
  config/      the typed config: schema.py, loader.py, redaction.py; compat.py: what earlier releases wrote

Each mirrors the job folder of the same stage under `jobs/` (ingest and sequences, sids, retrieval,
training, registry). Only `jobs/` touches Spark.
"""

from r2led_model.compat import install_moved_modules

install_moved_modules()
