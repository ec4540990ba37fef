"""The table conventions' one home: route_candidates column names and item_sids levels."""

from __future__ import annotations

import pytest

from jobs.retrieval.retrieve import route_columns
from jobs.retrieval.table_shapes import CANDIDATE_PARTS, candidate_column, candidate_routes, sid_levels
from r2led_model.config import load_config
from r2led_model.retrieval.multi_route import RoutePlan


def test_the_routes_retrieve_writes_are_the_routes_every_reader_finds():
    config = load_config("tiny", ["retrieval.routes=[sid1,sid2,collab]"])
    plan = RoutePlan.from_config(config.retrieval, 3)
    written = [name for name, _ in route_columns(plan)]
    assert len(written) == len(plan.route_names) * len(CANDIDATE_PARTS)
    assert candidate_routes(["sample_id", "user_id", *written, "codebook_version"]) == list(plan.route_names)
    assert candidate_column("sid2", "mask") in written
    with pytest.raises(ValueError, match="unknown candidate part 'items'"):
        candidate_column("sid1", "items")


def test_sid_levels_reads_the_code_count_and_names_an_empty_table(spark):
    sids = spark.createDataFrame([(1, [3, 1, 4]), (2, [1, 5, 9])], "item_id BIGINT, semantic_codes ARRAY<INT>")
    assert sid_levels(sids) == 3
    with pytest.raises(ValueError, match="item_sids is empty"):
        sid_levels(sids.limit(0))
