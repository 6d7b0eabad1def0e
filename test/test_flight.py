"""A drone's flight phases without ROS: takeoff (checked, retried, given up), streaming setpoints from
safe velocities, hover on late commands or a stale pose, land on silence, on a lost pose, on request
or when the world grounds it, the landing chain (notify_setpoints_stop, then land) and the streamed
descent when its services fail."""
from __future__ import annotations

import numpy as np
import pytest

from lgtc_ros.flight import (NONE, DroneFlight, Phase, autostart_due, pose_source, takeoff_outcome)
from lgtc_ros.frames import ArenaFrame

FRAME = ArenaFrame(half_extent_m=2.0, flight_height_m=1.0)
DT = 0.05
HOME = [0.5, -0.5, 1.0]


def flight(lines: list | None = None, **kwargs) -> DroneFlight:
    kwargs = {"takeoff_s": 2.0, "call_timeout_s": 0.5, "retry_s": 0.2, "land_s": 1.0, **kwargs}
    return DroneFlight(FRAME, DT, name="cf3", report=lambda level, line: (lines if lines is not None else []).append(
        (level, line)), **kwargs)


def answer(f: DroneFlight, now: float, service: str, ok: bool = True, reason: str = "", reached: bool = True):
    call = f.pop_call(now)
    assert call is not None and call.service == service, call
    if ok:
        assert f.call_succeeded(call.id, now)
    else:
        assert f.call_failed(call.id, now, reason, may_have_reached=reached)
    return call


def airborne(lines: list | None = None, now: float = 0.0, **kwargs) -> DroneFlight:
    f = flight(lines, **kwargs)
    f.on_pose([0.5, -0.5, 0.0], now)
    f.start(now)
    assert f.phase is Phase.TAKING_OFF and f.update(now) == NONE
    answer(f, now, "takeoff")
    assert f.pop_call(now) is None                              # nothing else to send
    f.on_pose([0.5, -0.5, 0.9], now + 1.0)
    assert f.update(now + 1.0) == NONE                          # the high-level commander climbs
    f.on_pose(HOME, now + 1.99)
    first = f.update(now + 2.0)
    assert f.phase is Phase.MISSION and first.kind == "setpoint"
    np.testing.assert_allclose(first.setpoint.position_m, HOME)
    return f


def fly(f: DroneFlight, t0: float, t1: float, v=(0.0, 0.0), pose=HOME, commands=True):
    """Ticks from t0 to t1 with fresh poses (and commands): the last command."""
    cmd = NONE
    for t in np.arange(t0, t1 + 1e-9, DT):
        if pose is not None:
            f.on_pose(pose, t)
        if commands:
            f.on_command(t, v)
        cmd = f.update(t)
    return cmd


# ----------------------------------------------------------------------------- streaming and watchdogs


def test_streams_integrated_setpoints_from_safe_velocities():
    f = airborne()
    cmd = fly(f, 2.05, 3.0, v=(0.4, 0.0))                       # 0.4 m commanded, the measured pose stays put
    assert cmd.kind == "setpoint"
    np.testing.assert_allclose(cmd.setpoint.velocity_m_s, [0.4, 0.0, 0.0])
    np.testing.assert_allclose(cmd.setpoint.position_m, [0.5 + 0.3, -0.5, 1.0], atol=1e-9)  # lead-clamped at 0.3 m


def test_late_commands_hover_then_land_through_notify_setpoints_stop():
    lines = []
    f = airborne(lines)
    fly(f, 2.05, 2.05, v=(0.4, 0.0))
    hold = fly(f, 2.1, 2.35, commands=False)                   # > hover_after_s: hold position
    assert hold.kind == "setpoint" and np.allclose(hold.setpoint.velocity_m_s, 0.0)
    assert ("info", "cf3: hovering (no safe command for 0.25 s)") in lines
    assert fly(f, 2.4, 3.6, commands=False) == NONE and f.phase is Phase.LANDING
    assert ("info", "cf3: landing (no safe command for 1.5 s)") in lines
    f.on_command(4.0, [0.4, 0.0])                               # too late: it stays down
    assert f.update(4.0) == NONE
    answer(f, 4.0, "notify_setpoints_stop")                     # streamed to: hand over first
    answer(f, 4.0, "land")
    assert f.pop_call(4.0) is None and f.update(4.9) == NONE and f.phase is Phase.LANDING
    assert f.update(5.0) == NONE and f.phase is Phase.DOWN      # land_s after the land was answered


def test_land_is_sent_only_after_notify_setpoints_stop_answers():
    f = airborne()
    fly(f, 2.05, 2.5)
    f.land("lgtc/land")
    notify = f.pop_call(2.5)
    assert notify.service == "notify_setpoints_stop" and f.pop_call(2.6) is None  # land waits for the answer
    f.call_succeeded(notify.id, 2.7)
    assert f.pop_call(2.7).service == "land"


def test_a_stale_pose_holds_without_trusting_it_then_lands():
    lines = []
    f = airborne(lines)
    before = fly(f, 2.05, 3.05, v=(0.4, 0.0)).setpoint.position_m
    held = fly(f, 3.1, 3.6, v=(0.4, 0.0), pose=None)           # no pose for 0.55 s while commands go on
    assert held.kind == "setpoint" and np.allclose(held.setpoint.velocity_m_s, 0.0)
    np.testing.assert_allclose(held.setpoint.position_m, before)  # held where it was
    assert ("warning", "cf3: hovering (no pose for 0.5 s)") in lines
    assert fly(f, 3.65, 5.1, v=(0.4, 0.0), pose=None) == NONE and f.phase is Phase.LANDING
    assert ("info", "cf3: landing (no pose for 2 s)") in lines
    assert f.pop_call(5.1).service == "notify_setpoints_stop"


def test_the_pose_watchdog_times_are_parameters():
    f = airborne(pose_hover_after_s=0.2, pose_land_after_s=0.6)
    fly(f, 2.05, 2.2)
    assert np.allclose(fly(f, 2.25, 2.45, pose=None).setpoint.velocity_m_s, 0.0)
    assert fly(f, 2.5, 2.85, pose=None) == NONE and f.phase is Phase.LANDING


def test_the_mission_waits_for_a_fresh_pose_and_lands_without_one():
    f = flight(takeoff_s=1.0)
    f.start(0.0)
    answer(f, 0.0, "takeoff")
    assert f.update(1.0) == NONE and f.phase is Phase.TAKING_OFF  # no pose yet: the commander holds it up
    f.on_pose(HOME, 1.2)
    assert f.update(1.2).kind == "setpoint" and f.phase is Phase.MISSION

    g = flight()
    g.start(0.0)
    answer(g, 0.0, "takeoff")
    assert g.update(2.0) == NONE and g.phase is Phase.LANDING   # 2 s without any pose: land
    assert g.pop_call(2.0).service == "land"                    # never streamed: no hand-over


def test_land_on_request_and_start_only_from_ground():
    f = airborne()
    f.land()
    assert f.update(3.0) == NONE and f.phase is Phase.LANDING
    f.start(4.0)
    assert f.phase is Phase.LANDING                             # landing, not ground: no re-takeoff


def test_commands_before_the_mission_are_ignored_and_bad_parameters_rejected():
    f = DroneFlight(FRAME, DT)
    f.on_command(0.0, [1.0, 0.0])
    assert f.update(0.0) == NONE and f.phase is Phase.GROUND and f.pop_call(0.0) is None
    for bad in ({"takeoff_s": 0.0}, {"call_attempts": 0}, {"call_timeout_s": -1.0}, {"pose_hover_after_s": 3.0}):
        with pytest.raises(ValueError):
            DroneFlight(FRAME, DT, **bad)


# ----------------------------------------------------------------------------- service failures


def test_a_takeoff_without_answer_is_logged_and_retried():
    lines = []
    f = flight(lines)
    f.on_pose([0.5, -0.5, 0.0], 0.0)
    f.start(0.0)
    first = f.pop_call(0.0)
    assert f.pop_call(0.4) is None                              # one request at a time
    assert f.update(0.5) == NONE                                # no answer within 0.5 s: failed
    assert lines == [("warning", "cf3: takeoff failed: no response within 0.5 s (attempt 1 of 2); retrying in 0.2 s")]
    assert not f.call_succeeded(first.id, 0.55)                 # its late answer no longer counts
    assert f.pop_call(0.6) is None                              # the retry waits retry_s
    second = answer(f, 0.7, "takeoff")
    assert (second.attempt, second.attempts) == (2, 2)
    f.on_pose(HOME, 2.65)
    assert f.update(2.7).kind == "setpoint"                     # takeoff_s after the answer


def test_a_takeoff_not_available_twice_leaves_the_drone_down():
    lines = []
    f = flight(lines)
    f.start(0.0)
    answer(f, 0.0, "takeoff", ok=False, reason="service /cf3/takeoff not available", reached=False)
    answer(f, 0.2, "takeoff", ok=False, reason="service /cf3/takeoff not available", reached=False)
    assert f.phase is Phase.DOWN and f.pop_call(1.0) is None and f.update(5.0) == NONE   # no land: it never rose
    assert lines[-1] == ("error", "cf3: takeoff failed: service /cf3/takeoff not available (attempt 2 of 2); "
                                  "cf3 stays on the ground and does not fly this mission")


def test_a_takeoff_rejected_twice_after_reaching_the_server_lands_the_drone():
    lines = []
    f = flight(lines)
    f.start(0.0)
    f.pop_call(0.0)
    f.update(0.5)                                               # timed out: it may have reached the drone
    answer(f, 0.7, "takeoff", ok=False, reason="RuntimeError: boom", reached=True)
    assert f.phase is Phase.LANDING and f.pop_call(0.7).service == "land"
    assert ("error", "cf3: takeoff failed: RuntimeError: boom (attempt 2 of 2); cf3 does not fly this mission "
                     "and lands in case it rose") in lines


def test_a_failed_landing_streams_a_descent():
    lines = []
    f = airborne(lines)
    fly(f, 2.05, 2.5)
    f.land("the world grounded it")
    answer(f, 2.5, "notify_setpoints_stop")
    answer(f, 2.5, "land", ok=False, reason="service /cf3/land not available", reached=False)
    answer(f, 2.7, "land", ok=False, reason="service /cf3/land not available", reached=False)
    assert lines[-1] == ("error", "cf3: land failed: service /cf3/land not available (attempt 2 of 2); "
                                  "landing cf3 by streaming a descent")
    z = [f.update(t).setpoint.position_m[2] for t in (2.7, 3.2, 3.7, 4.0)]
    np.testing.assert_allclose(z, [1.0, 0.52, 0.04, 0.04], atol=1e-9)   # land_s = 1 s down to land_height_m
    assert f.update(3.2).setpoint.velocity_m_s[2] == pytest.approx(-0.96)
    assert f.update(4.25) == NONE and f.phase is Phase.DOWN     # settled, streaming stops


def test_a_failed_hand_over_streams_a_descent_too():
    f = airborne()
    fly(f, 2.05, 2.5)
    f.land()
    f.pop_call(2.5)
    f.update(3.0)
    f.pop_call(3.2)
    f.update(3.7)                                               # notify_setpoints_stop twice unanswered
    assert f.pop_call(3.7) is None                              # no land: the firmware would ignore it
    assert f.update(3.7).kind == "setpoint" and f.update(3.7).setpoint.position_m[2] == pytest.approx(1.0)


def test_no_landing_for_a_drone_that_never_rose():
    lines = []
    f = flight(lines)
    f.start(0.0)
    f.land("the world grounded it")                             # before its takeoff was even sent
    assert f.phase is Phase.DOWN and f.pop_call(0.0) is None
    assert lines == [("info", "cf3: stays on the ground (the world grounded it; no takeoff request reached it)")]
    h = flight()
    h.start(0.0)
    answer(h, 0.0, "takeoff", ok=False, reason="service /cf3/takeoff not available", reached=False)
    h.land()                                                    # while its retry waits: it never rose either
    assert h.phase is Phase.DOWN and h.pop_call(1.0) is None

    g = flight()
    g.on_pose([0.5, -0.5, 0.0], 0.0)
    g.start(0.0)
    answer(g, 0.0, "takeoff")                                   # answered, but it did not rise
    g.land()
    g.on_pose([0.5, -0.5, 0.01], 0.1)
    answer(g, 0.1, "land", ok=False, reason="x", reached=False)
    answer(g, 0.4, "land", ok=False, reason="x", reached=False)
    assert g.phase is Phase.DOWN and g.update(0.45) == NONE     # no descent: streaming would lift it


# ----------------------------------------------------------------------------- swarm decisions


def test_airborne_means_every_drone_done_with_its_takeoff_and_one_flying():
    P = Phase
    assert takeoff_outcome({"cf1": P.MISSION, "cf2": P.TAKING_OFF}) is None
    assert takeoff_outcome({"cf1": P.MISSION, "cf2": P.GROUND}) is None
    assert takeoff_outcome({"cf1": P.MISSION, "cf2": P.MISSION}) == (["cf1", "cf2"], [])
    assert takeoff_outcome({"cf1": P.MISSION, "cf2": P.DOWN, "cf3": P.LANDING}) == (["cf1"], ["cf2", "cf3"])
    assert takeoff_outcome({"cf1": P.DOWN, "cf2": P.DOWN}) == ([], ["cf1", "cf2"])


def test_autostart_waits_for_every_drone_then_for_those_up():
    assert autostart_due({"cf1": True, "cf2": True}, 0.0, 30.0)
    assert not autostart_due({"cf1": True, "cf2": False}, 29.0, 30.0)
    assert autostart_due({"cf1": True, "cf2": False}, 30.0, 30.0)
    assert not autostart_due({"cf1": False, "cf2": False}, 100.0, 30.0)


def test_pose_source_per_link():
    assert pose_source("cflib", False) == pose_source("cflib", True) == "link"
    assert pose_source("crazyswarm2", True) == "tf"
    assert pose_source("crazyswarm2", False) == "topic"
    with pytest.raises(ValueError):
        pose_source("wifi", False)
