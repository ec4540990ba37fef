"""The MLflow registry: promotion of a challenger and scoring with the champion."""
