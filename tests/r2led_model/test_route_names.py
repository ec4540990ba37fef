"""The route-name grammar: one parser for the config's check, the retrieval plan and the models."""

from __future__ import annotations

import pytest

from r2led_model.config import ConfigError, load_config
from r2led_model.retrieval.multi_route import RoutePlan
from r2led_model.retrieval.route_names import CATEGORY_LEVEL, is_sid_route, route_level


def test_each_name_has_its_level_and_anything_else_is_refused():
    assert [route_level(n) for n in ("collab", "category", "sid1", "sid12")] == [0, CATEGORY_LEVEL, 1, 12]
    assert route_level("sid3", levels=3) == 3
    for bad in ("sid0", "sid", "sid-1", "sid1a", "Sid1", "collaborative", ""):
        with pytest.raises(ValueError, match="is not 'collab', 'category' or 'sid<l>'"):
            route_level(bad)
    with pytest.raises(ValueError, match="1 <= l <= 3"):
        route_level("sid4", levels=3)
    assert [is_sid_route(n) for n in ("sid2", "sid0", "collab", None, "r_sid2")] == [True, False, False, False, False]


def test_the_config_and_the_retrieval_plan_refuse_the_same_names():
    with pytest.raises(ConfigError, match=r"retrieval\.routes: route 'sid0' is not"):
        load_config("tiny", ["retrieval.routes=[sid1,sid0]"])
    assert load_config("tiny", ["retrieval.routes=[sid2,collab,category]"]).retrieval.routes == (
        "sid2", "collab", "category")
    with pytest.raises(ValueError, match="1 <= l <= 2"):  # the plan also knows the SIDs actually assigned
        RoutePlan.from_config(load_config("tiny", ["retrieval.routes=[sid3,collab]"]).retrieval, levels=2)
