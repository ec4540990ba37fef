"""The one home of the r_<route> group names: built, parsed and read back from training_examples' columns."""

from r2led_model.sequences.features import example_routes, group_route, route_group


def test_route_groups_round_trip_and_other_groups_have_no_route():
    for route in ("sid1", "sid3", "collab", "category"):
        assert group_route(route_group(route)) == route
    assert route_group("sid2") == "r_sid2"
    assert group_route("short") is None and group_route("long") is None


def test_example_routes_reads_the_routes_in_column_order_from_their_item_columns():
    columns = ["sample_id", "target_item", "r_sid2_item", "r_sid2_cat", "short_item", "r_collab_item",
               "r_collab_mask", "long_item", "r_category_item"]
    assert example_routes(columns) == ("sid2", "collab", "category")
