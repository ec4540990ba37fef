"""MovieLens-100K as shipped inside the `recbole==1.2.1` wheel (design.md §5).

The files are read from the installed package, never copied into the repo (their licence
forbids redistribution). `ml-100k.inter`: user_id, item_id, rating, timestamp (tab-separated,
typed header). `ml-100k.item`: item_id, movie_title, release_year, class (space-separated genres).
A rating at or above `click_threshold` is a click (label 1), below it a non-click (label 0).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.ingest.sources.common import (ParsedSource, SourceError, field, first_reason, id_reason, non_finite,
                                        raw_event_frame, read_lines, require_files, to_double, to_id, to_long)
from r2led_model.config import MovieLensSourceConfig

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
# The 19 genres of MovieLens-100K, in the dataset's own order: category_id = position of the first genre.
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western")


def embedded_dataset_dir() -> Path:
    """`recbole/dataset_example/ml-100k` inside the installed wheel, located without importing recbole."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("MovieLens-100K: package recbole==1.2.1 is not installed "
                          "(pip install --no-deps recbole==1.2.1)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not folder.is_dir():
        raise SourceError(f"MovieLens-100K: {folder} not found in the installed recbole package")
    return folder


def load_movielens(spark: SparkSession, config: MovieLensSourceConfig) -> ParsedSource:
    folder = Path(config.path) if config.path else embedded_dataset_dir()
    inter_file, item_file = require_files([folder / "ml-100k.inter", folder / "ml-100k.item"], "MovieLens-100K")

    lines = read_lines(spark, [inter_file], header=INTER_HEADER)
    parts = F.split("raw", "\t", -1)
    user_t, item_t, rating_t, ts_t = (field(parts, i) for i in range(4))
    user, item, rating = to_id(user_t), to_id(item_t), to_double(rating_t)
    # Timestamps are typed float in the header but written as integers; a float that does not fit
    # a long (NaN, 1e30) must become a reject, not a cast overflow that stops the job.
    ts_float = to_double(ts_t)
    ts = F.coalesce(to_long(ts_t), F.when(F.abs(ts_float) < 1e15, ts_float.cast("bigint")))
    reason = first_reason(
        F.when(F.size(parts) != 4, F.lit("wrong_field_count")),
        id_reason(user_t, user, "user_id"),
        id_reason(item_t, item, "item_id"),
        F.when(ts_t.isNull(), F.lit("missing_timestamp")).when(ts.isNull(), F.lit("bad_timestamp")),
        F.when(rating_t.isNull(), F.lit("missing_value"))
        .when(rating.isNull() | non_finite(rating) | (rating < 0) | (rating > 5), F.lit("bad_value")),
    )
    events = raw_event_frame(lines.select(
        "raw", "source_file", user.alias("user_id"), item.alias("item_id"), ts.alias("ts"),
        F.lit("rating").alias("behavior"), rating.alias("value"),
        (rating >= F.lit(config.click_threshold)).cast("int").alias("label"),
        reason.alias("reason"),
    ))

    item_lines = read_lines(spark, [item_file], header=ITEM_HEADER)
    iparts = F.split("raw", "\t", -1)
    id_t, title, year, genres = (field(iparts, i) for i in range(4))
    item_id = to_id(id_t)
    genre_list = F.split(F.coalesce(genres, F.lit("")), " ")
    first_genre = F.get(genre_list, 0)
    genre_index = F.array_position(F.array(*[F.lit(g) for g in GENRES]), first_genre)
    # "Toy Story (1995). Genres: Animation, Children's, Comedy."
    title_part = F.concat(title, F.when(year.isNotNull(), F.concat(F.lit(" ("), year, F.lit(")"))).otherwise(F.lit("")),
                          F.lit("."))
    text = F.concat_ws(
        " ",
        title_part,
        F.when(genres.isNotNull(), F.concat(F.lit("Genres: "), F.array_join(genre_list, ", "), F.lit("."))),
    )
    item_reason = first_reason(
        F.when(F.size(iparts) != 4, F.lit("item_wrong_field_count")),
        id_reason(id_t, item_id, "item_id"),
    )
    parsed_items = item_lines.select(
        "raw", "source_file", item_id.alias("item_id"),
        F.when(genre_index > 0, genre_index - 1).cast("bigint").alias("category_id"),
        F.when(title.isNotNull(), text).alias("text"),
        item_reason.alias("reason"),
    )
    return ParsedSource(
        name="movielens100k",
        events=events,
        items=parsed_items.where(F.col("reason").isNull()).select("item_id", "category_id", "text"),
        items_rejected=parsed_items.where(F.col("reason").isNotNull()).select("raw", "reason", "source_file"),
        files=(inter_file, item_file),
    )
