"""What RViz shows of a mission, decided without ROS: `mission_markers` turns one tick of the world
(consumers and their open demand, the drones' poses, which consumer each drone chose) into plain
`Marker` dataclasses in the world frame (metres); the world node only converts them to a
``visualization_msgs/MarkerArray`` on ``lgtc/markers`` (parameter ``markers``, off by default).

What is drawn, one namespace each (RViz keys a marker by namespace and id; every id here is an
index that never changes during a mission, so a marker is updated in place, never duplicated):

- ``consumer_area`` (id m): a flat disc of radius R_m, the area inside which a drone serves
  consumer m (R_m grows with the demand when the scenario says so, as in the simulator);
- ``consumer_demand`` (id m): a column on consumer m whose height is its open demand (summed over
  resource types, `DEMAND_HEIGHT_M` per unit): it shrinks as drones release or cover, and a
  consumer whose demand is met is a flat stub;
- ``drone`` (id i): a sphere at drone i, coloured like the consumer it chose (its ``lgtc_state/v1``
  record), grey while that is unknown, stale or the drone has landed;
- ``safety`` (id i): a translucent disc of the safety radius around drone i (another drone's
  centre inside it is a collision: the CBF keeps them out);
- ``links`` (id 0): one line list, a segment per pair of drones within the communication radius C,
  by `comm.neighbours_within`, the one neighbour rule the radio and the simulator use.

A marker that must disappear (a drone without a finite pose, the safety disc of a landed drone)
comes back with ``visible=False``: the node sends a DELETE for its namespace and id.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame

DEMAND_HEIGHT_M = 1.0
"""Column height per unit of open demand, m: the bundled missions demand 0.4-2 units a consumer,
so the columns stand 0.4-2 m next to drones flying at about 1 m."""
DRONE_DIAMETER_M = 0.1
"""A Crazyflie 2.1 is 92 mm motor to motor."""
MIN_SIZE_M = 0.005
"""The smallest extent drawn: RViz rejects a marker with a zero scale, and a met demand is a stub."""
DISC_HEIGHT_M = 0.01
LINK_WIDTH_M = 0.01
STATE_MAX_AGE_S = 1.0
"""An agent's choice older than this (20 ticks at 20 Hz) is shown as unknown: the agent has stopped
deciding (landed, crashed or its process died), so its last choice is no longer what it does."""

NAMESPACES = ("consumer_area", "consumer_demand", "drone", "safety", "links")


@dataclass(frozen=True)
class Rgba:
    r: float
    g: float
    b: float
    a: float = 1.0

    def with_alpha(self, a: float) -> Rgba:
        return Rgba(self.r, self.g, self.b, a)


GREY = Rgba(0.55, 0.55, 0.55)
LINK_COLOR = Rgba(0.3, 0.6, 1.0, 0.6)
PALETTE = (  # matplotlib's tab10 without its grey: grey means "no choice"
    Rgba(0.122, 0.467, 0.706), Rgba(1.000, 0.498, 0.055), Rgba(0.173, 0.627, 0.173), Rgba(0.839, 0.153, 0.157),
    Rgba(0.580, 0.404, 0.741), Rgba(0.549, 0.337, 0.294), Rgba(0.890, 0.467, 0.761), Rgba(0.737, 0.741, 0.133),
    Rgba(0.090, 0.745, 0.812),
)


def consumer_color(m: int) -> Rgba:
    """Consumer m's colour (cycling beyond nine consumers)."""
    return PALETTE[m % len(PALETTE)]


@dataclass(frozen=True)
class Marker:
    """One RViz marker, world frame, metres. `shape` maps to visualization_msgs/Marker's type;
    `scale_m`: diameters in x, y and the height in z (cylinder, sphere), the line width in x
    (line list); `points_m`: the line list's segment ends, two per segment."""

    ns: str
    id: int
    shape: Literal["cylinder", "sphere", "line_list"]
    position_m: tuple[float, float, float]
    scale_m: tuple[float, float, float]
    color: Rgba
    points_m: tuple[tuple[float, float, float], ...] = ()
    visible: bool = True


class ChoiceBoard:
    """Each drone's latest chosen consumer, from its ``lgtc_state/v1`` records (decoded by the
    caller with `comm.decode_agent_state`)."""

    def __init__(self, n_agents: int, max_age_s: float = STATE_MAX_AGE_S) -> None:
        self.choice = np.full(n_agents, -1, dtype=np.int64)
        self.stamp = np.full(n_agents, -np.inf)
        self.max_age_s = float(max_age_s)

    def record(self, i: int, state: comm.AgentState | None) -> bool:
        """Take drone i's decoded state; False (ignored) if it did not decode, is another drone's
        (a miswired topic must not colour the wrong drone) or is older than the one held."""
        if state is None or state.agent_id != i or state.stamp < self.stamp[i]:
            return False
        self.choice[i], self.stamp[i] = state.choice, state.stamp
        return True

    def current(self, now: float) -> np.ndarray:
        """[N] the chosen consumer, -1 where none, unknown or older than `max_age_s` at `now`."""
        fresh = now - self.stamp <= self.max_age_s
        return np.where(fresh, self.choice, -1)


def consumer_radii_m(scenario, demand: np.ndarray, frame: ArenaFrame) -> np.ndarray:
    """[M] R_m in metres: `world.resources.consumer_radii` (the simulator's rule) on open demand [M,r]."""
    radius = scenario.consumer_radius * (1.0 + scenario.consumer_radius_demand_scale * demand.sum(-1))
    return radius * frame.half_extent_m


def mission_markers(scenario, frame: ArenaFrame, demands: comm.DemandBroadcast, poses_m: np.ndarray,
                    active: np.ndarray, choices: np.ndarray) -> list[Marker]:
    """The markers of one tick. `demands`: the tick's demand broadcast (consumer positions in arena
    units, open demand [M,r]); `poses_m` [N,3] world metres; `active` [N] still flying; `choices`
    [N] the consumer each drone chose, -1 for none or unknown (`ChoiceBoard.current`)."""
    poses = np.asarray(poses_m, dtype=np.float64).reshape(-1, 3)
    active = np.asarray(active, dtype=bool).reshape(len(poses))
    choices = np.asarray(choices, dtype=np.int64).reshape(len(poses))
    demand = np.asarray(demands.demand, dtype=np.float64)
    consumers_m = frame.to_metres(np.asarray(demands.consumer_pos, dtype=np.float64))
    radii = consumer_radii_m(scenario, demand, frame)
    n_consumers = len(consumers_m)
    out: list[Marker] = []

    for m, ((x, y), radius, open_demand) in enumerate(zip(consumers_m.tolist(), radii.tolist(),
                                                          demand.sum(-1).tolist())):
        color = consumer_color(m)
        out.append(Marker("consumer_area", m, "cylinder", (x, y, DISC_HEIGHT_M / 2),
                          (2 * radius, 2 * radius, DISC_HEIGHT_M), color.with_alpha(0.25)))
        height = max(MIN_SIZE_M, DEMAND_HEIGHT_M * open_demand)
        out.append(Marker("consumer_demand", m, "cylinder", (x, y, height / 2), (radius, radius, height),
                          color.with_alpha(0.8)))

    known = np.isfinite(poses).all(1)
    safety_d = float(2 * scenario.safety_radius * frame.half_extent_m)
    at = [tuple(p) for p in np.where(known[:, None], poses, 0.0).tolist()]  # plain floats, once
    for i, (position, ok, flying, pick) in enumerate(zip(at, known.tolist(), active.tolist(), choices.tolist())):
        color = consumer_color(pick) if flying and 0 <= pick < n_consumers else GREY
        out.append(Marker("drone", i, "sphere", position, (DRONE_DIAMETER_M,) * 3, color, visible=ok))
        out.append(Marker("safety", i, "cylinder", position, (safety_d, safety_d, DISC_HEIGHT_M),
                          color.with_alpha(0.2), visible=ok and flying))

    # the rule in arena units, as the radio applies it; landed drones and unknown poses have no link
    linked = active & known
    arena = frame.to_arena(np.where(known[:, None], poses, 0.0))
    pairs = np.argwhere(np.triu(comm.neighbours_within(arena, scenario.comm_radius, linked), k=1))
    points = tuple(at[k] for k in pairs.ravel().tolist())
    out.append(Marker("links", 0, "line_list", (0.0, 0.0, 0.0), (LINK_WIDTH_M, 0.0, 0.0), LINK_COLOR, points))
    return out

