"""Lung-RADS v2022 baseline size categories: the cut-offs, part-solid and ground-glass rules,
a configurable table, and category ordering."""

from __future__ import annotations

import pytest

from medsight.errors import ConfigError
from medsight.metrics.lungrads import LungRadsTable, category_at_least, lung_rads_category


@pytest.mark.parametrize(("d", "cat"), [(3.0, "2"), (5.9, "2"), (6.0, "3"), (7.9, "3"), (8.0, "4A"),
                                        (14.9, "4A"), (15.0, "4B"), (40.0, "4B")])
def test_solid_nodule_cut_offs(d, cat):
    assert lung_rads_category("solid", d) == cat


def test_diameters_are_rounded_to_a_tenth_of_a_mm_before_the_cut_offs():
    assert lung_rads_category("solid", 5.94) == "2"
    assert lung_rads_category("solid", 5.96) == "3"
    assert LungRadsTable(round_to_mm=0).category("solid", 5.96) == "2"


@pytest.mark.parametrize(("total", "solid", "cat"), [(5.0, 2.0, "2"), (10.0, 3.0, "3"), (10.0, 6.0, "4A"),
                                                     (12.0, 8.0, "4B"), (10.0, None, "3")])
def test_part_solid_nodules_are_graded_on_their_solid_component(total, solid, cat):
    assert lung_rads_category("part-solid", total, solid_component_mm=solid) == cat


def test_ground_glass_nodules_are_category_2_below_30_mm_and_3_from_30():
    assert lung_rads_category("ground-glass", 29.9) == "2"
    assert lung_rads_category("ground-glass", 30.0) == "3"


def test_a_site_table_changes_the_cut_offs():
    table = LungRadsTable.from_dict({"solid": [{"below_mm": 5, "category": "2"}, {"below_mm": None, "category": "4A"}]})
    assert table.category("solid", 5.5) == "4A" and table.category("ground-glass", 35) == "3"


@pytest.mark.parametrize("data", [
    {"solid": [{"below_mm": 6, "category": "2"}]},
    {"solid": [{"below_mm": 8, "category": "2"}, {"below_mm": 6, "category": "3"},
               {"below_mm": None, "category": "4B"}]},
    {"solid": [{"below_mm": 6, "category": "5"}, {"below_mm": None, "category": "4B"}]},
    {"unknown": 1},
])
def test_a_bad_table_is_a_config_error(data):
    with pytest.raises(ConfigError, match="Lung-RADS table"):
        LungRadsTable.from_dict(data)


@pytest.mark.parametrize(("args", "match"), [(("solid", 0.0), "diameter"), (("solid", float("nan")), "diameter"),
                                             (("calcified", 5.0), "nodule type")])
def test_bad_nodules_are_config_errors(args, match):
    with pytest.raises(ConfigError, match=match):
        lung_rads_category(*args)
    with pytest.raises(ConfigError, match="solid component"):
        lung_rads_category("part-solid", 8.0, solid_component_mm=9.0)


def test_categories_order_from_2_to_4b():
    assert category_at_least("4B", "4A") and category_at_least("4A", "4A") and not category_at_least("3", "4A")
    with pytest.raises(ConfigError):
        category_at_least("5", "4A")
