"""Typed, frozen configuration for every R2LED job, and the one loader that builds it.

  schema.py     one frozen dataclass per section, value ranges (`RANGES`) and cross-key checks
  loader.py     base ← env ← --config file ← --set, merged, coerced and checked; errors name the key
  redaction.py  what a printed config hides (secret-looking keys, URI credentials)

`from r2led_model.config import Config, load_config` reads the same names as before the split.
"""

from r2led_model.config.schema import (ANY_NUMBER, AmazonSourceConfig, BenchmarkConfig, CONF_DIR_ENV, COUNT,
                                       CatalogueNoiseConfig, CodebookConfig, CollabConfig, Config, ConfigError,
                                       ETAConfig, EmbeddingConfig, FillMode, GateMode, ImpressionConfig, IngestConfig,
                                       MlflowConfig, ModelConfig, MovieLensSourceConfig, NON_NEGATIVE,
                                       NegativeSamplingConfig, POSITIVE, PipelineConfig, R2LEDConfig, RANGES, Range,
                                       OccupancyCounts, RegistryConfig, RetrievalConfig, RetrievalMode,
                                       RouteFusionMode, SDIMConfig, SEED, SHARE, SIMHardConfig, SequencesConfig,
                                       SidFusion, SidPools, SimHardMatch,
                                       SimHardSearch, Similarity, SourceConfig, SparkConfig, SplitConfig,
                                       SyntheticConfig, SyntheticSourceConfig, TableColumnsConfig, TableFormat,
                                       TableItemsConfig, TableSourceConfig, TablesConfig, TaobaoSourceConfig,
                                       TmallSourceConfig, TopKRetrievalConfig, TrainingConfig, TrainingSetConfig,
                                       TuningConfig, WorkspaceConfig, parse_utc_timestamp, template_fields)
from r2led_model.config.loader import (BASE_ENV, DEFAULT_ENV, build_config, build_section, default_conf_dir,
                                       for_model, load_config, resolve_env, split_as_of, with_values)
from r2led_model.config.redaction import (REDACTED, is_secret_key, redacted)

__all__ = [
    "ANY_NUMBER", "AmazonSourceConfig", "BenchmarkConfig", "CONF_DIR_ENV", "COUNT", "CatalogueNoiseConfig",
    "CodebookConfig", "CollabConfig", "Config", "ConfigError", "ETAConfig", "EmbeddingConfig", "FillMode", "GateMode",
    "ImpressionConfig", "IngestConfig", "MlflowConfig", "ModelConfig", "MovieLensSourceConfig", "NON_NEGATIVE",
    "NegativeSamplingConfig", "POSITIVE", "PipelineConfig", "R2LEDConfig", "RANGES", "Range", "RegistryConfig",
    "RetrievalConfig", "RetrievalMode", "RouteFusionMode", "SDIMConfig", "SEED", "SHARE", "SIMHardConfig",
    "OccupancyCounts", "SequencesConfig", "SidFusion", "SidPools", "SimHardMatch", "SimHardSearch", "Similarity",
    "SourceConfig",
    "SparkConfig", "SplitConfig", "SyntheticConfig", "SyntheticSourceConfig", "TableColumnsConfig", "TableFormat",
    "TableItemsConfig", "TableSourceConfig", "TablesConfig", "TaobaoSourceConfig", "TmallSourceConfig",
    "TopKRetrievalConfig", "TrainingConfig", "TrainingSetConfig", "TuningConfig", "WorkspaceConfig",
    "parse_utc_timestamp", "template_fields", "BASE_ENV", "DEFAULT_ENV", "build_config", "build_section",
    "default_conf_dir", "for_model", "load_config", "resolve_env", "split_as_of", "with_values", "REDACTED",
    "is_secret_key", "redacted",
]
