"""Scenario loading: every bundled file loads; every bad input gets one error naming file, field, value."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lgtc_ros.scenario import (Scenario, ScenarioError, bundled_scenarios, load_scenario, resolve_scenario,
                               scenario_from_dict)

PAPER = resolve_scenario("paper_10x4")


def paper_dict() -> dict:
    return yaml.safe_load(PAPER.read_text())


def write(tmp_path: Path, data: dict, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", bundled_scenarios())
def test_bundled_scenarios_load(name):
    s = load_scenario(resolve_scenario(name))
    assert isinstance(s, Scenario)
    assert s.n_agents >= s.n_consumers and s.dt == 0.05


def test_paper_scenario_matches_the_paper():
    s = load_scenario(PAPER)
    assert (s.n_agents, s.n_consumers, s.comm_radius, s.dt) == (10, 4, 1.0, 0.05)
    assert s.random.demand_types_per_consumer == 2
    assert {r.kind for r in s.resources} == {"instantaneous", "persistent"}


def test_discharge_scenario_is_the_fig5_mission():
    s = load_scenario(resolve_scenario("discharge_5x3"))
    assert (s.n_agents, s.n_consumers, s.n_resources) == (5, 3, 4)
    assert s.resources[2].kind == "persistent"
    assert all(row[2] > 0 and sum(row) == row[2] for row in s.initial.supply)  # batteries only
    (event,) = s.events
    assert event.kind == "discharge" and event.time_s == 50.0 and event.land
    assert s.event_step(event) == 1000


def test_frozen():
    s = load_scenario(PAPER)
    with pytest.raises(Exception):
        s.n_agents = 3  # type: ignore[misc]


def edit(data: dict, dotted: str, value):
    data = copy.deepcopy(data)
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize("dotted, value, field, words", [
    ("colour", "red", "colour", "unknown key"),
    ("rewards.colision", 1.0, "rewards.colision", "unknown key"),
    ("random.agent_spread", 1.0, "random.agent_spread", "unknown key"),
    ("n_agents", "ten", "n_agents", "must be an integer"),
    ("n_agents", 10.5, "n_agents", "must be an integer"),
    ("v_max", "fast", "v_max", "must be a finite number"),
    ("v_max", -0.5, "v_max", "must be > 0"),
    ("comm_radius", -1.0, "comm_radius", "must be > 0"),
    ("consumer_radius", -0.1, "consumer_radius", "must be > 0"),
    ("safety_radius", 0.0, "safety_radius", "must be > 0"),
    ("rewards.collision", -1.0, "rewards.collision", "must be >= 0"),
    ("random.supply_range", [0.2, 0.9], "random.supply_range", "supply totals above demand totals"),
    ("random.supply_range", [0.2], "random.supply_range", "must have 2 entries"),
    ("random.demand_range", [1.0, 0.5], "random.demand_range", "low <= high"),
    ("events", [{"time_s": 1.0, "kind": "discharge", "agent": 12}], "events[0].agent", "no such agent"),
    ("events", [{"time_s": 1.0, "kind": "teleport", "agent": 1}], "events[0].kind", "must be one of"),
    ("events", [{"time_s": 1.0, "kind": "discharge", "select": "lone", "agent": 1}], "events[0].agent",
     "not both"),
    ("events", [{"time_s": 1.0, "kind": "dropout"}], "events[0].agent", "needs an agent or a select"),
    ("events", [{"time_s": 1.0, "kind": "discharge", "select": "last"}], "events[0].select", "must be one of"),
    ("events", [{"time_s": 1.0, "kind": "demand_change", "consumer": 0, "select": "lone"}], "events[0].select",
     "only discharge and dropout"),
    ("events", [{"time_s": 99.0, "kind": "dropout", "agent": 1}], "events[0].time_s", "within the episode"),
    ("events", [{"time_s": 1.0, "kind": "demand_change", "consumer": 9}], "events[0].consumer",
     "no such consumer"),
    ("resources", [{"name": "x", "kind": "gas"}], "resources[0].kind", "must be one of"),
    ("n_consumers", 11, "n_agents", "must be >= n_consumers"),
])
def test_validation_errors_name_file_field_value(tmp_path, dotted, value, field, words):
    path = write(tmp_path, edit(paper_dict(), dotted, value))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert str(path) in msg, msg
    assert f"'{field}" in msg, msg
    assert words in msg, msg


def test_supply_above_demand_with_fixed_values(tmp_path):
    data = yaml.safe_load(resolve_scenario("discharge_5x3").read_text())
    data["initial"]["supply"] = [[0, 0, 2.0, 0]] * 5
    with pytest.raises(ScenarioError, match=r"initial.supply.*supply totals above demand totals"):
        load_scenario(write(tmp_path, data))


def test_initial_shape_checked(tmp_path):
    data = yaml.safe_load(resolve_scenario("discharge_5x3").read_text())
    data["initial"]["agent_pos"] = [[0.0, 0.0]] * 4
    with pytest.raises(ScenarioError, match=r"'initial.agent_pos'.*5 rows of 2"):
        load_scenario(write(tmp_path, data))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("n_agents: [1, 2\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="top level must be a mapping"):
        load_scenario(bad)


def test_missing_required_field():
    data = paper_dict()
    del data["n_agents"]
    with pytest.raises(ScenarioError, match="missing required field 'n_agents'"):
        scenario_from_dict(data, source="x.yaml")


@pytest.mark.parametrize("dotted, value, field, words", [
    ("random.supply_types", [2, 9], "random.supply_types", "distinct type indices"),
    ("random.demand_types", [], "random.demand_types", "distinct type indices"),
    ("random.discharge_probability", 1.5, "random.discharge_probability", "probability"),
])
def test_randomization_extensions_validated(tmp_path, dotted, value, field, words):
    path = write(tmp_path, edit(paper_dict(), dotted, value))
    with pytest.raises(ScenarioError, match=words) as err:
        load_scenario(path)
    assert f"'{field}'" in str(err.value)


def test_types_per_row_limited_by_allowed_types(tmp_path):
    data = edit(paper_dict(), "random.demand_types", [0])
    with pytest.raises(ScenarioError, match=r"demand_types_per_consumer' = 2: must be in 1..1"):
        load_scenario(write(tmp_path, data))


def test_cap_supply_replaces_the_worst_case_check(tmp_path):
    data = edit(paper_dict(), "random.supply_range", [0.2, 0.9])
    with pytest.raises(ScenarioError, match="supply totals above demand totals"):
        load_scenario(write(tmp_path, data))
    assert load_scenario(write(tmp_path, edit(data, "random.cap_supply", True), "ok.yaml")).random.cap_supply
