"""Deployment bridge: arena <-> metres, setpoint integration, command watchdog, cflib backend.

No hardware and no radio: the cflib backend runs against a recording fake with the
SyncCrazyflie interface, and the real cflib signatures are checked with inspect.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import lgtc_ros.cflib_link as cflib_link
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.bridge import CommandWatchdog, FullStateSetpoint, SetpointIntegrator, WatchdogState
from lgtc_ros.cflib_link import CflibSwarmLink, yaw_to_quaternion
from lgtc_ros.scenario import load_scenario, resolve_scenario

PAPER = load_scenario(resolve_scenario("paper_10x4"))
FRAME = ArenaFrame(half_extent_m=2.0, origin_m=(0.5, -1.0), flight_height_m=0.8)


# ----------------------------------------------------------------------------- ArenaFrame


def test_frame_round_trips():
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, size=(5, 7, 2))
    p_m = FRAME.to_metres(p)
    np.testing.assert_allclose(FRAME.to_arena(p_m), p)
    p_m3 = np.concatenate([p_m, np.full((5, 7, 1), 0.8)], axis=-1)
    np.testing.assert_allclose(FRAME.to_arena(p_m3), p)
    np.testing.assert_allclose(FRAME.to_metres([1.0, -1.0]), [2.5, -3.0])
    np.testing.assert_allclose(FRAME.to_metres([0.0, 0.0]), [0.5, -1.0])

    v = rng.normal(size=(4, 2))
    np.testing.assert_allclose(FRAME.velocity_to_metres(v), 2.0 * v)  # no origin offset
    np.testing.assert_allclose(FRAME.velocity_to_arena(FRAME.velocity_to_metres(v)), v)
    np.testing.assert_allclose(FRAME.velocity_to_arena([0.4, -0.2, 9.0]), [0.2, -0.1])


def test_frame_from_paper_scenario():
    frame = ArenaFrame.from_scenario(PAPER, origin_m=(1.0, 2.0))
    assert frame.half_extent_m == pytest.approx(PAPER.arena_size_m / 2)
    assert frame.flight_height_m == pytest.approx(PAPER.altitude_m)
    assert frame.origin_m == (1.0, 2.0)
    np.testing.assert_allclose(frame.to_metres([1.0, 1.0]), [1.0 + PAPER.arena_size_m / 2, 2.0 + PAPER.arena_size_m / 2])
    # v_max in arena units/s becomes m/s
    np.testing.assert_allclose(frame.velocity_to_metres([PAPER.v_max, 0.0]), [PAPER.v_max * PAPER.arena_size_m / 2, 0.0])


@pytest.mark.parametrize("kwargs", [
    dict(half_extent_m=0.0),
    dict(half_extent_m=-1.0),
    dict(half_extent_m=math.inf),
    dict(half_extent_m=1.0, flight_height_m=0.0),
    dict(half_extent_m=1.0, flight_height_m=math.nan),
    dict(half_extent_m=1.0, origin_m=(0.0, math.nan)),
    dict(half_extent_m=1.0, origin_m=(0.0, 1.0, 2.0)),
])
def test_frame_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        ArenaFrame(**kwargs)


def test_frame_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        FRAME.to_metres([1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        FRAME.to_arena([1.0])


# ----------------------------------------------------------------------------- SetpointIntegrator


def test_integrator_advances_by_v_dt_in_metres():
    integ = SetpointIntegrator(FRAME, dt=0.05)
    integ.reset([0.5, -1.0, 0.03])  # on the ground at the arena centre
    sp = integ.step([0.2, -0.1])
    np.testing.assert_allclose(sp.velocity_m_s, [0.4, -0.2, 0.0])
    np.testing.assert_allclose(sp.position_m, [0.5 + 0.4 * 0.05, -1.0 - 0.2 * 0.05, 0.8])
    np.testing.assert_array_equal(sp.acceleration_m_s2, np.zeros(3))
    assert sp.yaw_rad == 0.0
    for _ in range(9):
        sp = integ.step([0.2, -0.1])
    np.testing.assert_allclose(sp.position_m, [0.5 + 0.4 * 0.5, -1.0 - 0.2 * 0.5, 0.8])
    np.testing.assert_allclose(integ.position_m, sp.position_m)


def test_integrator_lead_clamp_against_lagging_drone():
    integ = SetpointIntegrator(FRAME, dt=0.05, max_lead_m=0.3)
    integ.reset([0.5, -1.0])
    measured = np.array([0.5, -1.0, 0.8])  # the drone does not move at all
    for _ in range(40):  # 40 * 0.05 s * 0.8 m/s = 1.6 m of command
        sp = integ.step([0.3, 0.2], measured)
    lead = sp.position_m[:2] - measured[:2]
    assert np.linalg.norm(lead) == pytest.approx(0.3)
    # projected back along the direction it ran off in
    np.testing.assert_allclose(lead / np.linalg.norm(lead), np.array([0.3, 0.2]) / np.hypot(0.3, 0.2))
    np.testing.assert_allclose(sp.velocity_m_s, [0.6, 0.4, 0.0])  # feed-forward unchanged

    # a drone pushed 1 m away gets its setpoint pulled to within max_lead of where it is now
    pushed = np.array([1.5, -1.0])
    sp = integ.step([0.0, 0.0], pushed)
    assert np.linalg.norm(sp.position_m[:2] - pushed) == pytest.approx(0.3)

    # within the lead, the measurement changes nothing
    integ.reset([0.5, -1.0])
    sp = integ.step([0.1, 0.0], [0.5, -1.0])
    np.testing.assert_allclose(sp.position_m[:2], [0.5 + 0.2 * 0.05, -1.0])


def test_integrator_arena_clamp_zeroes_outward_velocity():
    integ = SetpointIntegrator(FRAME, dt=0.05)
    integ.reset(FRAME.to_metres([0.99, 0.0]))
    sp = integ.step([1.0, 0.5])  # 0.1 m/step outward in x, 0.05 m/step in y
    assert sp.position_m[0] == pytest.approx(FRAME.upper_m[0])
    assert sp.velocity_m_s[0] == 0.0
    assert sp.velocity_m_s[1] == pytest.approx(1.0)
    assert sp.position_m[1] == pytest.approx(-1.0 + 0.05)

    # pinned at the wall, moving back inward keeps its velocity
    sp = integ.step([-0.5, 0.0])
    assert sp.velocity_m_s[0] == pytest.approx(-1.0)
    assert sp.position_m[0] == pytest.approx(FRAME.upper_m[0] - 0.05)

    # lower corner, both axes
    integ.reset(FRAME.lower_m)
    sp = integ.step([-0.3, -0.3])
    np.testing.assert_allclose(sp.position_m[:2], FRAME.lower_m)
    np.testing.assert_array_equal(sp.velocity_m_s, np.zeros(3))

    # a drone standing outside the box is anchored on its edge
    integ.reset(FRAME.upper_m + 0.5)
    np.testing.assert_allclose(integ.position_m[:2], FRAME.upper_m)


def test_integrator_nonfinite_input_holds():
    integ = SetpointIntegrator(FRAME, dt=0.05)
    integ.reset([0.0, 0.0])
    before = integ.step([0.1, 0.1]).position_m
    for bad in ([math.nan, 0.1], [0.0, math.inf], [-math.inf, math.nan]):
        sp = integ.step(bad)
        np.testing.assert_array_equal(sp.position_m, before)
        np.testing.assert_array_equal(sp.velocity_m_s, np.zeros(3))
    assert integ.nonfinite == 3
    np.testing.assert_array_equal(integ.hold().position_m, before)
    # a NaN measurement is ignored, not propagated
    sp = integ.step([0.1, 0.0], [math.nan, 0.0])
    assert np.all(np.isfinite(sp.position_m))
    assert integ.nonfinite_measurements == 1


def test_integrator_step_before_reset_raises():
    integ = SetpointIntegrator(FRAME, dt=0.05)
    assert integ.position_m is None
    with pytest.raises(RuntimeError, match="reset"):
        integ.step([0.0, 0.0])
    with pytest.raises(ValueError):
        SetpointIntegrator(FRAME, dt=0.0)
    with pytest.raises(ValueError):
        SetpointIntegrator(FRAME, dt=0.05, max_lead_m=-0.1)
    with pytest.raises(ValueError):
        integ.reset([math.nan, 0.0])


def test_setpoint_validates_and_is_immutable():
    sp = FullStateSetpoint([1, 2, 3], [0, 0, 0], [0, 0, 0])
    assert sp.position_m.dtype == float
    with pytest.raises(ValueError):
        sp.position_m[0] = 5.0
    with pytest.raises(ValueError):
        FullStateSetpoint([1, 2], [0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError):
        FullStateSetpoint([1, 2, 3], [0, math.nan, 0], [0, 0, 0])


# ----------------------------------------------------------------------------- CommandWatchdog


def test_watchdog_transitions_latch_and_reset():
    wd = CommandWatchdog(hover_after_s=0.25, land_after_s=1.5)
    wd.reset(10.0)
    assert wd.update(10.1) is WatchdogState.HOVERING  # no command yet
    wd.command(10.2)
    assert wd.update(10.3) is WatchdogState.FLYING
    assert wd.update(10.44) is WatchdogState.FLYING
    assert wd.update(10.45) is WatchdogState.HOVERING
    wd.command(10.5)  # commands resume in time: fly again
    assert wd.update(10.55) is WatchdogState.FLYING
    assert wd.update(11.9) is WatchdogState.HOVERING
    assert wd.update(12.0) is WatchdogState.LANDING
    wd.command(12.05)  # latched: a late command does not resume flight
    assert wd.update(12.06) is WatchdogState.LANDING
    assert wd.state is WatchdogState.LANDING
    wd.reset(13.0)
    wd.command(13.0)
    assert wd.update(13.05) is WatchdogState.FLYING


def test_watchdog_lands_without_any_command_and_on_a_gap():
    wd = CommandWatchdog()
    wd.reset(0.0)
    assert wd.update(1.49) is WatchdogState.HOVERING
    assert wd.update(1.5) is WatchdogState.LANDING

    wd.reset(0.0)
    wd.command(0.0)
    wd.command(2.0)  # 2 s of silence nobody polled: still latches
    assert wd.update(2.01) is WatchdogState.LANDING

    wd.reset(5.0)
    wd.command(4.9)  # stamped before the re-arm: stale, does not count as a command
    assert wd.update(5.0) is WatchdogState.HOVERING
    wd.command(5.1)
    wd.command(5.0)  # reordered: ignored
    assert wd.update(5.3) is WatchdogState.FLYING
    assert wd.update(5.36) is WatchdogState.HOVERING

    fresh = CommandWatchdog()
    with pytest.raises(RuntimeError):
        fresh.update(0.0)


@pytest.mark.parametrize("hover, land", [(0.0, 1.5), (-0.1, 1.5), (1.5, 1.5), (2.0, 1.5), (0.25, math.inf), (math.nan, 1.0)])
def test_watchdog_rejects_bad_parameters(hover, land):
    with pytest.raises(ValueError, match="hover_after_s"):
        CommandWatchdog(hover_after_s=hover, land_after_s=land)


# ----------------------------------------------------------------------------- cflib backend


class _Recorder:
    """Records every method call as (owner, method, args, kwargs) into a shared log."""

    def __init__(self, owner: str, log: list):
        self._owner = owner
        self._log = log

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args, **kwargs):
            self._log.append((self._owner, method, args, kwargs))
        return call


class FakeSyncCrazyflie:
    """The SyncCrazyflie surface CflibSwarmLink uses, recording instead of flying."""

    def __init__(self, uri: str, log: list, fail: bool = False):
        self.uri = uri
        self._log = log
        self._fail = fail
        self.cf = type("FakeCf", (), {})()
        self.cf.commander = _Recorder(f"{uri}:commander", log)
        self.cf.high_level_commander = _Recorder(f"{uri}:hlc", log)

    def open_link(self):
        self._log.append((self.uri, "open_link", (), {}))
        if self._fail:
            raise Exception("Too many packets lost!")

    def close_link(self):
        self._log.append((self.uri, "close_link", (), {}))


URIS = {"cf1": "radio://0/80/2M/E7E7E7E701", "cf2": "radio://0/80/2M/E7E7E7E702"}
U1, U2 = URIS["cf1"], URIS["cf2"]


@pytest.fixture
def drivers(monkeypatch):
    """Count cflib.crtp.init_drivers calls instead of registering real drivers."""
    import cflib.crtp

    calls = []
    monkeypatch.setattr(cflib.crtp, "init_drivers", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(cflib_link, "_drivers_initialised", False)
    return calls


def _link(log, fail_uri=None):
    return CflibSwarmLink(URIS, FRAME, dt=0.05, cf_factory=lambda uri: FakeSyncCrazyflie(uri, log, fail=uri == fail_uri))


def test_link_full_mission_calls(drivers):
    log: list = []
    link = _link(log)
    link.connect()
    assert drivers == [((), {})]
    assert log == [(U1, "open_link", (), {}), (U2, "open_link", (), {})]
    log.clear()

    link.takeoff(0.8, 2.0)
    assert log == [(f"{U1}:hlc", "takeoff", (0.8, 2.0), {}), (f"{U2}:hlc", "takeoff", (0.8, 2.0), {})]
    log.clear()

    sp = FullStateSetpoint([0.1, 0.2, 0.8], [0.3, -0.4, 0.0], [0.0, 0.0, 0.0], yaw_rad=math.pi / 2)
    link.send("cf1", sp)
    q = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))
    assert log == [(f"{U1}:commander", "send_full_state_setpoint",
                    ((0.1, 0.2, 0.8), (0.3, -0.4, 0.0), (0.0, 0.0, 0.0), q, 0.0, 0.0, 0.0), {})]
    log.clear()

    link.hover("cf1")
    assert log == [(f"{U1}:commander", "send_full_state_setpoint",
                    ((0.1, 0.2, 0.8), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), q, 0.0, 0.0, 0.0), {})]
    log.clear()

    link.stop()
    assert log == [(f"{U1}:commander", "send_notify_setpoint_stop", (100,), {}),
                   (f"{U2}:commander", "send_notify_setpoint_stop", (100,), {})]
    log.clear()

    link.land(3.0)  # streaming already stopped: no second notify
    assert log == [(f"{U1}:hlc", "land", (0.0, 3.0), {}), (f"{U2}:hlc", "land", (0.0, 3.0), {})]
    log.clear()

    link.close()
    assert log == [(U1, "close_link", (), {}), (U2, "close_link", (), {})]
    assert not link.connected


def test_link_land_hands_over_from_streaming(drivers):
    log: list = []
    with _link(log) as link:
        link.send("cf2", FullStateSetpoint([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]))
        log.clear()
        link.land(2.0)
        # only the drone that was streaming needs the hand-over, and it comes before land
        assert log == [(f"{U1}:hlc", "land", (0.0, 2.0), {}),
                       (f"{U2}:commander", "send_notify_setpoint_stop", (100,), {}),
                       (f"{U2}:hlc", "land", (0.0, 2.0), {})]
        log.clear()
        link.send("cf1", FullStateSetpoint([0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]))
        log.clear()
        link.land(2.0, name="cf1")  # one drone alone (its battery is gone): the other keeps flying
        assert log == [(f"{U1}:commander", "send_notify_setpoint_stop", (100,), {}),
                       (f"{U1}:hlc", "land", (0.0, 2.0), {})]
        log.clear()
    assert log == [(U1, "close_link", (), {}), (U2, "close_link", (), {})]


def test_link_connect_failure_closes_open_links(drivers):
    log: list = []
    uris = dict(URIS, cf3="radio://0/80/2M/E7E7E7E703")
    link = CflibSwarmLink(uris, FRAME, cf_factory=lambda uri: FakeSyncCrazyflie(uri, log, fail=uri == U2))
    with pytest.raises(ConnectionError, match=r"cf2 at radio://0/80/2M/E7E7E7E702.*Too many packets lost"):
        link.connect()
    assert log == [(U1, "open_link", (), {}), (U2, "open_link", (), {}), (U1, "close_link", (), {})]
    assert not link.connected
    with pytest.raises(RuntimeError, match="connect"):
        link.send("cf1", FullStateSetpoint([0, 0, 1], [0, 0, 0], [0, 0, 0]))


def test_link_init_drivers_once_and_errors(drivers):
    log: list = []
    link = _link(log)
    link.connect()
    link.close()
    link.connect()
    assert len(drivers) == 1
    with pytest.raises(KeyError, match="cf1, cf2"):
        link.send("cf9", FullStateSetpoint([0, 0, 1], [0, 0, 0], [0, 0, 0]))
    with pytest.raises(KeyError, match="cf1, cf2"):
        link.hover("cf9")
    with pytest.raises(RuntimeError, match="no setpoint"):
        link.hover("cf1")
    with pytest.raises(ValueError, match="range"):
        link.send("cf1", FullStateSetpoint([40.0, 0, 1], [0, 0, 0], [0, 0, 0]))
    with pytest.raises(ValueError):
        link.takeoff(0.0, 2.0)
    link.close()


def test_real_cflib_accepts_our_arguments(drivers):
    import cflib
    from cflib.crazyflie.commander import Commander
    from cflib.crazyflie.high_level_commander import HighLevelCommander
    from cflib.crazyflie.syncCrazyflie import SyncCrazyflie
    from cflib.utils.encoding import compress_quaternion, decompress_quaternion

    assert cflib.__name__ == "cflib"
    log: list = []
    with _link(log) as link:
        link.send("cf1", FullStateSetpoint([0.1, 0.2, 0.8], [0.3, 0.0, 0.0], [0.0, 0.0, 0.0], yaw_rad=0.3))
        link.stop("cf1")
        link.takeoff(1.0, 2.0)
        link.land(2.0)
    by_method = {
        ("commander", "send_full_state_setpoint"): Commander.send_full_state_setpoint,
        ("commander", "send_notify_setpoint_stop"): Commander.send_notify_setpoint_stop,
        ("hlc", "takeoff"): HighLevelCommander.takeoff,
        ("hlc", "land"): HighLevelCommander.land,
    }
    seen = set()
    for owner, method, args, kwargs in log:
        kind = owner.rsplit(":", 1)[-1]
        if (kind, method) in by_method:
            inspect.signature(by_method[kind, method]).bind(None, *args, **kwargs)
            seen.add((kind, method))
        else:
            assert method in ("open_link", "close_link")
            assert callable(getattr(SyncCrazyflie, method))
    assert seen == set(by_method)
    # our quaternion order is the one cflib's compression expects ([qx, qy, qz, qw])
    q = decompress_quaternion(compress_quaternion(yaw_to_quaternion(0.3)))
    np.testing.assert_allclose(q, [0.0, 0.0, math.sin(0.15), math.cos(0.15)], atol=2e-3)



# ----------------------------------------------------------------------------- cflib pose logging
# cflib's own classes with only the radio stubbed: a real `Crazyflie` (its packet thread, its `Log`,
# its `LogConfig` unpacking) on a `FakeRadio` that answers the log port the way the firmware does.

import queue  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402


class FakeRadio:
    """The link cflib's `Crazyflie(link=...)` reads and writes: answers log-block commands with
    success (as the firmware does) and delivers the log data a test sends (`log`)."""

    needs_resending = False  # a real radio's retry timers are not wanted here

    def __init__(self, uri: str = "radio://0/80/2M/E7E7E7E701"):
        from cflib.crazyflie.log import CHAN_SETTINGS, CMD_CREATE_BLOCK, CMD_START_LOGGING

        self.uri, self.inbox, self.sent, self.block_id = uri, queue.Queue(), [], None
        self._settings, self._create, self._start = CHAN_SETTINGS, CMD_CREATE_BLOCK, CMD_START_LOGGING
        self.started = threading.Event()

    def send_packet(self, pk):
        from cflib.crtp.crtpstack import CRTPPacket, CRTPPort

        self.sent.append((pk.port, pk.channel, bytes(pk.data)))
        if pk.port == CRTPPort.LOGGING and pk.channel == self._settings:
            cmd, block = pk.data[0], pk.data[1]
            if cmd == self._create:
                self.block_id = block
            reply = CRTPPacket()
            reply.set_header(CRTPPort.LOGGING, self._settings)
            reply.data = bytes((cmd, block, 0))  # error 0: done
            self.inbox.put(reply)
            if cmd == self._start:
                self.started.set()

    def receive_packet(self, wait=0):
        try:
            return self.inbox.get(timeout=wait)
        except queue.Empty:
            return None

    def log(self, timestamp_ms: int, xyz) -> None:
        """The Crazyflie sends one sample of the pose block."""
        from cflib.crazyflie.log import CHAN_LOGDATA
        from cflib.crtp.crtpstack import CRTPPacket, CRTPPort

        pk = CRTPPacket()
        pk.set_header(CRTPPort.LOGGING, CHAN_LOGDATA)
        pk.data = bytes((self.block_id,)) + timestamp_ms.to_bytes(3, "little") + struct.pack("<fff", *xyz)
        self.inbox.put(pk)

    def close(self):
        pass


def state_estimate_toc():
    """The log TOC a connection downloads, with the state estimate's x, y, z (floats)."""
    from cflib.crazyflie.log import LogTocElement
    from cflib.crazyflie.toc import Toc

    toc = Toc()
    for ident, axis in enumerate("xyz"):
        toc.add_element(LogTocElement(ident, bytes((7,)) + b"stateEstimate\x00" + axis.encode() + b"\x00"))  # 7: float
    return toc


class RadioSyncCrazyflie:
    """`SyncCrazyflie` stand-in around cflib's real `Crazyflie` on a `FakeRadio` (connected: TOC in place)."""

    def __init__(self, uri: str, toc=True):
        from cflib.crazyflie import Crazyflie
        from cflib.crazyflie.toc import Toc

        self.radio = FakeRadio(uri)
        self.cf = Crazyflie(link=self.radio)
        self.cf.log.toc = state_estimate_toc() if toc else Toc()

    def open_link(self):
        pass

    def close_link(self):
        self.cf.incoming.stop()
        self.cf.link = None


def radio_link(clock=time.monotonic, without_toc=()):
    made = {}

    def factory(uri):
        made[uri] = RadioSyncCrazyflie(uri, toc=uri not in without_toc)
        return made[uri]

    return CflibSwarmLink(URIS, FRAME, dt=0.05, cf_factory=factory, clock=clock), made


def test_pose_logging_streams_the_state_estimate_through_cflibs_real_log_classes(drivers):
    from cflib.crazyflie.log import CMD_CREATE_BLOCK, CMD_DELETE_BLOCK, CMD_START_LOGGING, CMD_STOP_LOGGING

    ticks = iter(range(100, 200))
    link, made = radio_link(clock=lambda: float(next(ticks)))
    link.connect()
    poked = []
    link.start_pose_logging(20, on_sample=lambda name: poked.append((name, threading.current_thread())))
    for uri in URIS.values():
        radio = made[uri].radio
        assert radio.started.wait(5.0), "the log block was never started"
        create = next(data for port, chan, data in radio.sent if port == 5 and data[0] == CMD_CREATE_BLOCK)
        assert create[2::2][:3] == bytes((0x77, 0x77, 0x77))            # three floats, stored and fetched as float
        start = next(data for port, chan, data in radio.sent if port == 5 and data[0] == CMD_START_LOGGING)
        assert start[2] == 2                                            # 20 ms, in the firmware's 10 ms units
    made[U1].radio.log(1234, (0.5, -1.25, 0.75))
    made[U2].radio.log(1240, (1.0, 2.0, 0.0))
    made[U1].radio.log(1254, (0.51, -1.25, 0.8))                        # newer: replaces cf1's first sample
    deadline = time.monotonic() + 5.0
    while len(poked) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    poses = link.take_poses()
    assert set(poses) == {"cf1", "cf2"} and link.take_poses() == {}       # handed over once
    np.testing.assert_allclose(poses["cf1"].position_m, (0.51, -1.25, 0.8), rtol=1e-6)
    assert poses["cf1"].timestamp_ms == 1254 and poses["cf2"].timestamp_ms == 1240
    assert poses["cf1"].received_s in (101.0, 102.0) and poses["cf2"].received_s in (100.0, 101.0, 102.0)  # our clock
    assert sorted(n for n, _ in poked) == ["cf1", "cf1", "cf2"]
    assert all(t is not threading.main_thread() for _, t in poked)       # called back from cflib's own thread
    link.close()                                                        # stops and deletes the blocks
    sent = [data[0] for port, chan, data in made[U1].radio.sent if port == 5 and chan == 1]
    assert sent[-2:] == [CMD_STOP_LOGGING, CMD_DELETE_BLOCK]


def test_pose_logging_refuses_bad_periods_and_names_a_drone_without_the_variables(drivers):
    link, _ = radio_link()
    link.connect()
    for bad in (5, 25, 0, 2550):
        with pytest.raises(ValueError, match="multiple of 10"):
            link.start_pose_logging(bad)
    link.close()
    link, _ = radio_link(without_toc=(U2,))                              # cf2's firmware lacks the variables
    link.connect()
    with pytest.raises(RuntimeError, match="cf2: the state-estimate log block was refused"):
        link.start_pose_logging(20)
    link.close()


def test_our_log_calls_match_cflibs_signatures():
    from cflib.crazyflie.log import Log, LogConfig
    from cflib.crazyflie.syncLogger import SyncLogger

    inspect.signature(LogConfig).bind(name="lgtc_pose_cf1", period_in_ms=20)
    inspect.signature(LogConfig.add_variable).bind(None, "stateEstimate.x", "float")
    inspect.signature(Log.add_config).bind(None, LogConfig("x", 20))
    for method in ("start", "stop", "delete"):
        inspect.signature(getattr(LogConfig, method)).bind(None)
    # the calls cflib's own SyncLogger makes to connect and disconnect a block: we make the same ones
    connect, disconnect = inspect.getsource(SyncLogger.connect), inspect.getsource(SyncLogger.disconnect)
    assert "log.add_config(config)" in connect and "data_received_cb.add_callback" in connect
    assert "config.start()" in connect and "config.stop()" in disconnect and "config.delete()" in disconnect


# ----------------------------------------------------------------------------- Crazyswarm2's robot file


def test_crazyflies_yaml_is_crazyswarm2s_fileversion_3_for_discharge_5x3():
    """config/crazyflies.yaml in Crazyswarm2's current format (IMRCLab/crazyswarm2: its launch.py reads
    `fileversion` and, from 2 on, `robot_types.<type>.motion_capture.tracking`; its servers read
    `reference_frame` from `all`, the type or the robot when fileversion >= 3), with the discharge_5x3
    start positions in metres."""
    import yaml

    from lgtc_ros.comm import default_names
    from lgtc_ros.frames import FRAME_ID

    root = __import__("pathlib").Path(__file__).resolve().parent.parent
    doc = yaml.safe_load((root / "config" / "crazyflies.yaml").read_text())
    assert doc["fileversion"] == 3
    scenario = load_scenario(resolve_scenario("discharge_5x3"))
    robots = doc["robots"]
    assert list(robots) == list(default_names(scenario.n_agents)) == ["cf1", "cf2", "cf3", "cf4", "cf5"]
    expected = ArenaFrame.from_scenario(scenario).to_metres(scenario.initial.agent_pos)
    for i, (name, robot) in enumerate(robots.items()):
        assert robot["enabled"] is True
        assert robot["uri"] == f"radio://0/80/2M/E7E7E7E70{i + 1}"
        pos = robot["initial_position"]
        assert len(pos) == 3 and all(type(v) is float for v in pos), pos   # Crazyswarm2 needs floats
        np.testing.assert_allclose(pos, [*expected[i], 0.0])
        kind = doc["robot_types"][robot["type"]]
        assert kind["motion_capture"]["tracking"] in ("vendor", "librigidbodytracker")
        assert {"marker", "dynamics"} <= set(kind["motion_capture"])
    assert doc["all"]["reference_frame"] == FRAME_ID                    # poses in our frame, no leading slash
    pose = doc["all"]["firmware_logging"]
    assert pose["enabled"] is True and pose["default_topics"]["pose"]["frequency"] >= 20   # /cfN/pose at 20 Hz
    assert doc["all"]["firmware_params"]["commander"]["enHighLevel"] == 1  # takeoff / land services
