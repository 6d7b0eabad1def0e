"""A drone's flight phases: takeoff, streaming setpoints from safe velocities, hover on late
commands, land on silence, on request or when the world grounds it."""
from __future__ import annotations

import numpy as np
import pytest

from lgtc_ros.frames import ArenaFrame
from lgtc_ros.flight import NONE, DroneFlight, Phase

FRAME = ArenaFrame(half_extent_m=2.0, flight_height_m=1.0)
DT = 0.05


def airborne(now: float = 0.0) -> DroneFlight:
    f = DroneFlight(FRAME, DT, takeoff_s=2.0)
    f.on_pose([0.5, -0.5, 0.0])
    f.start(now)
    assert f.update(now).kind == "takeoff" and f.phase is Phase.TAKING_OFF
    assert f.update(now + 1.0) == NONE
    f.on_pose([0.5, -0.5, 1.0])
    first = f.update(now + 2.0)
    assert f.phase is Phase.MISSION and first.kind == "setpoint"
    np.testing.assert_allclose(first.setpoint.position_m, [0.5, -0.5, 1.0])
    return f


def test_streams_integrated_setpoints_from_safe_velocities():
    f = airborne()
    t = 2.0
    for _ in range(20):  # 0.4 m commanded, the measured pose stays put
        t += DT
        f.on_command(t, [0.4, 0.0])
        cmd = f.update(t)
    assert cmd.kind == "setpoint"
    np.testing.assert_allclose(cmd.setpoint.velocity_m_s, [0.4, 0.0, 0.0])
    np.testing.assert_allclose(cmd.setpoint.position_m, [0.5 + 0.3, -0.5, 1.0], atol=1e-9)  # lead-clamped at 0.3 m


def test_late_commands_hover_then_land():
    f = airborne()
    f.on_command(2.05, [0.4, 0.0])
    assert f.update(2.05).setpoint.velocity_m_s[0] == pytest.approx(0.4)
    hold = f.update(2.05 + 0.3)                                 # > hover_after_s: hold position
    assert hold.kind == "setpoint" and np.allclose(hold.setpoint.velocity_m_s, 0.0)
    assert f.update(2.05 + 1.6).kind == "land" and f.phase is Phase.LANDING
    f.on_command(4.0, [0.4, 0.0])                               # too late: it stays down
    assert f.update(4.0) == NONE


def test_land_on_request_and_start_only_from_ground():
    f = airborne()
    f.land()
    assert f.update(3.0).kind == "land" and f.update(3.05) == NONE
    f.start(4.0)
    assert f.update(4.0) == NONE                                # landing, not ground: no re-takeoff


def test_no_pose_at_mission_start_lands_instead_of_streaming():
    f = DroneFlight(FRAME, DT, takeoff_s=1.0)
    f.start(0.0)
    assert f.update(0.0).kind == "takeoff"
    assert f.update(1.0).kind == "land"


def test_commands_before_the_mission_are_ignored_and_bad_takeoff_rejected():
    f = DroneFlight(FRAME, DT)
    f.on_command(0.0, [1.0, 0.0])
    assert f.update(0.0) == NONE and f.phase is Phase.GROUND
    with pytest.raises(ValueError):
        DroneFlight(FRAME, DT, takeoff_s=0.0)
