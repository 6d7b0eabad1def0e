"""What RViz shows (lgtc_ros.markers, no ROS): consumer sizes follow their open demand, drones take
the colour of the consumer they chose, links are exactly the pairs within C, ids never move."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.markers import (DEMAND_HEIGHT_M, GREY, MIN_SIZE_M, NAMESPACES, ChoiceBoard, consumer_color,
                              mission_markers)
from lgtc_ros.scenario import load_scenario, resolve_scenario

S = load_scenario(resolve_scenario("discharge_5x3"))
FRAME = ArenaFrame.from_scenario(S)  # 4 m arena: 2 m per arena unit


def broadcast(demand, consumer_pos=((-0.5, 0.4), (0.0, 0.6), (0.55, 0.1))) -> comm.DemandBroadcast:
    return comm.DemandBroadcast(0.0, np.asarray(consumer_pos, float), np.asarray(demand, float), np.zeros(4))


def poses(arena_xy, z=1.0) -> np.ndarray:
    p = FRAME.to_metres(np.asarray(arena_xy, float))
    return np.column_stack([p, np.full(len(p), z)])


START = poses(S.initial.agent_pos)
DEMAND = [[0, 0, 0.8, 0], [0, 0, 0.4, 0], [0, 0, 0.0, 0]]


def by(markers, ns):
    return {m.id: m for m in markers if m.ns == ns}


def test_consumer_columns_scale_with_open_demand_and_discs_show_r_m():
    out = mission_markers(S, FRAME, broadcast(DEMAND), START, np.ones(5, bool), np.full(5, -1))
    columns, areas = by(out, "consumer_demand"), by(out, "consumer_area")
    heights = [columns[m].scale_m[2] for m in range(3)]
    assert heights[0] == pytest.approx(0.8 * DEMAND_HEIGHT_M) and heights[1] == pytest.approx(0.4 * DEMAND_HEIGHT_M)
    assert heights[2] == MIN_SIZE_M                          # met: a stub, never a zero scale RViz rejects
    assert columns[0].position_m[2] == pytest.approx(heights[0] / 2)  # standing on the floor
    r_m = S.consumer_radius * FRAME.half_extent_m
    for m in range(3):
        assert areas[m].scale_m[:2] == pytest.approx((2 * r_m, 2 * r_m))  # the disc's diameter: R_m in metres
        assert areas[m].position_m[:2] == pytest.approx(tuple(FRAME.to_metres(S.initial.consumer_pos[m])))
    # less open demand, shorter column; a scenario whose R_m grows with demand draws a growing disc
    later = mission_markers(S, FRAME, broadcast([[0, 0, 0.2, 0], [0, 0, 0.4, 0], [0, 0, 0, 0]]), START,
                            np.ones(5, bool), np.full(5, -1))
    assert by(later, "consumer_demand")[0].scale_m[2] == pytest.approx(0.2 * DEMAND_HEIGHT_M)
    growing = dataclasses.replace(S, consumer_radius_demand_scale=1.0)
    areas = by(mission_markers(growing, FRAME, broadcast(DEMAND), START, np.ones(5, bool), np.full(5, -1)),
               "consumer_area")
    assert areas[0].scale_m[0] == pytest.approx(2 * r_m * 1.8) and areas[2].scale_m[0] == pytest.approx(2 * r_m)


def test_drones_take_the_colour_of_their_choice_grey_when_unknown_or_landed():
    active = np.array([True, True, True, True, False])
    choices = np.array([0, 2, -1, 1, 0])
    out = mission_markers(S, FRAME, broadcast(DEMAND), START, active, choices)
    drones, safety, columns = by(out, "drone"), by(out, "safety"), by(out, "consumer_demand")
    rgb = lambda c: (c.r, c.g, c.b)  # noqa: E731
    assert rgb(drones[0].color) == rgb(columns[0].color) and rgb(drones[1].color) == rgb(columns[2].color)
    assert rgb(drones[3].color) == rgb(consumer_color(1))
    assert drones[2].color == GREY and drones[4].color == GREY            # no choice; landed
    assert len({rgb(drones[i].color) for i in (0, 1, 3)}) == 3
    for i in range(5):
        assert drones[i].position_m == pytest.approx(tuple(START[i]))     # metres, world frame
        assert rgb(safety[i].color) == rgb(drones[i].color) and safety[i].color.a < 0.5  # translucent
    d = 2 * S.safety_radius * FRAME.half_extent_m
    assert safety[0].scale_m[:2] == pytest.approx((d, d))                 # radius: the safety radius in metres
    assert safety[4].visible is False and drones[4].visible               # a landed drone has no safety disc


@pytest.mark.parametrize("seed", range(4))
def test_links_are_exactly_the_pairs_within_c(seed):
    rng = np.random.default_rng(seed)
    arena = rng.uniform(-1, 1, (5, 2))
    active = rng.random(5) > 0.2
    s = dataclasses.replace(S, comm_radius=float(rng.uniform(0.4, 1.5)))
    out = mission_markers(s, FRAME, broadcast(DEMAND), poses(arena), active, np.zeros(5, int))
    (links,) = [m for m in out if m.ns == "links"]
    assert len(links.points_m) % 2 == 0 and links.scale_m[0] > 0
    where = {tuple(round(v, 9) for v in p): i for i, p in enumerate(poses(arena))}
    drawn = {frozenset(where[tuple(round(v, 9) for v in p)] for p in links.points_m[k:k + 2])
             for k in range(0, len(links.points_m), 2)}
    # by hand, in metres: both flying and no farther apart than C
    c_m = s.comm_radius * FRAME.half_extent_m
    expected = {frozenset((i, j)) for i, j in itertools.combinations(range(5), 2)
                if active[i] and active[j] and np.linalg.norm(poses(arena)[i] - poses(arena)[j]) <= c_m}
    assert drawn == expected and len(links.points_m) == 2 * len(expected)
    mask = comm.neighbours_within(arena, s.comm_radius, active)          # the radio's own rule agrees
    assert expected == {frozenset((i, j)) for i, j in zip(*np.nonzero(mask))}


def test_ids_are_stable_across_ticks_and_unique():
    first = mission_markers(S, FRAME, broadcast(DEMAND), START, np.ones(5, bool), np.full(5, -1))
    rng = np.random.default_rng(1)
    later = mission_markers(S, FRAME, broadcast([[0, 0, 0.1, 0], [0, 0, 0, 0], [0, 0, 0.3, 0]]),
                            poses(rng.uniform(-1, 1, (5, 2))), np.array([1, 0, 1, 1, 0], bool),
                            np.array([2, -1, 0, 1, 1]))
    keys = [(m.ns, m.id) for m in first]
    assert keys == [(m.ns, m.id) for m in later] and len(set(keys)) == len(keys)
    assert {m.ns for m in first} == set(NAMESPACES)
    assert sorted(by(first, "drone")) == list(range(5)) and sorted(by(first, "consumer_area")) == [0, 1, 2]
    for m in first:
        if m.shape != "line_list":
            assert min(m.scale_m) > 0, (m.ns, m.id)                       # RViz drops zero-scale markers


def test_a_drone_without_a_pose_is_deleted_and_has_no_links():
    p = START.copy()
    p[1] = np.nan
    out = mission_markers(S, FRAME, broadcast(DEMAND), p, np.ones(5, bool), np.zeros(5, int))
    assert by(out, "drone")[1].visible is False and by(out, "safety")[1].visible is False
    (links,) = [m for m in out if m.ns == "links"]
    assert links.points_m and np.isfinite(links.points_m).all()          # the others still link
    assert tuple(START[1]) not in links.points_m


def state(agent: int, stamp: float, choice: int) -> comm.AgentState:
    return comm.decode_agent_state(comm.encode_agent_state(agent, stamp, np.zeros(4), np.full(3, 1 / 3), choice),
                                   expect_m=3)


def test_choice_board_takes_each_drones_own_newest_fresh_choice():
    board = ChoiceBoard(3, max_age_s=1.0)
    assert board.current(0.0).tolist() == [-1, -1, -1]                    # nothing heard: unknown
    assert board.record(0, state(0, 10.0, 2)) and board.record(1, state(1, 10.0, 0))
    assert not board.record(2, state(1, 10.0, 1))                         # drone 1's record on drone 2's topic
    assert not board.record(0, state(0, 9.0, 1))                          # older than the one held
    assert not board.record(0, None)                                      # did not decode
    assert board.current(10.5).tolist() == [2, 0, -1]
    assert board.record(1, state(1, 10.8, -1)) and board.current(11.5).tolist() == [-1, -1, -1]  # stale; "none"
