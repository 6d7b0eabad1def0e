"""The labelled Float64MultiArray wire format: round trips, every rejection counted, decoders that
never raise, human-readable labels, and the numpy neighbourhood rule equal to the torch one."""
from __future__ import annotations

import dataclasses
import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lgtc_ros.comm import (
    FUTURE_TOLERANCE_S, REASONS, DecodeStats, DemandBroadcast, Dim, FloatArray, NeighbourMessage,
    SupplyStatus, decode_agent_state, decode_demands, decode_neighbour, decode_reward_terms, decode_supply,
    default_names, encode_agent_state, encode_demands, encode_neighbour, encode_reward_terms, encode_supply,
    neighbours_within,
)
from lgtc_ros.world.observation import neighbour_mask

FAST = settings(max_examples=40, deadline=None, derandomize=True)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def vec(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n)


def neighbour(agent=2, stamp=100.0, g=64, f=64, seed=0) -> NeighbourMessage:
    return NeighbourMessage(agent, stamp, vec(2, seed), vec(g, seed + 1), vec(f, seed + 2))


def demands(stamp=100.0, m=3, r=2) -> DemandBroadcast:
    rng = np.random.default_rng(0)
    return DemandBroadcast(stamp, rng.uniform(-1, 1, (m, 2)), rng.uniform(0, 1, (m, r)),
                           np.arange(r) % 2)


def with_data(arr: FloatArray, index: int, value: float) -> FloatArray:
    data = arr.data.copy()
    data[index] = value
    return dataclasses.replace(arr, data=data)


# ---------------------------------------------------------------- round trips

@FAST
@given(agent=st.integers(0, 1000), stamp=st.floats(0, 2e9), g=st.integers(0, 80),
       f=st.integers(0, 80), seed=st.integers(0, 2**16), scale=finite)
def test_neighbour_round_trip(agent, stamp, g, f, seed, scale):
    msg = NeighbourMessage(agent, stamp, vec(2, seed) * scale, vec(g, seed + 1) * scale, vec(f, seed + 2))
    stats = DecodeStats()
    out = decode_neighbour(encode_neighbour(msg), stamp, 0.5, g, f, stats)
    assert out is not None and stats.counts == {"ok": 1}
    assert out.agent_id == agent and out.stamp == stamp
    for name in ("position", "psi", "x"):
        np.testing.assert_array_equal(getattr(out, name), getattr(msg, name))


@FAST
@given(m=st.integers(0, 6), r=st.integers(1, 5), seed=st.integers(0, 2**16), stamp=st.floats(0, 2e9))
def test_demands_round_trip(m, r, seed, stamp):
    rng = np.random.default_rng(seed)
    msg = DemandBroadcast(stamp, rng.uniform(-1, 1, (m, 2)), rng.uniform(0, 5, (m, r)), rng.integers(0, 2, r))
    out = decode_demands(encode_demands(msg), stamp + 0.01, 0.5, m, r, DecodeStats())
    assert out is not None and out.stamp == stamp
    np.testing.assert_array_equal(out.consumer_pos, msg.consumer_pos)
    np.testing.assert_array_equal(out.demand, msg.demand)
    np.testing.assert_array_equal(out.kinds, msg.kinds)
    assert out.consumer_pos.shape == (m, 2) and out.demand.shape == (m, r)


@FAST
@given(f=st.integers(0, 70), m=st.integers(0, 6), seed=st.integers(0, 2**16), data=st.data())
def test_agent_state_round_trip(f, m, seed, data):
    choice = data.draw(st.integers(-1, m - 1))
    arr = encode_agent_state(4, 12.5, vec(f, seed), vec(m, seed + 1), choice)
    out = decode_agent_state(arr, f, m, DecodeStats())
    assert out is not None and (out.agent_id, out.stamp, out.choice) == (4, 12.5, choice)
    np.testing.assert_array_equal(out.x, vec(f, seed))
    np.testing.assert_array_equal(out.attention, vec(m, seed + 1))


@FAST
@given(n=st.integers(0, 10), names=st.lists(st.text("abcdefghij_", min_size=1, max_size=12),
                                             min_size=1, max_size=8, unique=True), seed=st.integers(0, 99))
def test_reward_terms_round_trip(n, names, seed):
    values = np.random.default_rng(seed).normal(size=(n, len(names)))
    out = decode_reward_terms(encode_reward_terms(3.0, names, values), n, DecodeStats())
    assert out is not None and out.names == tuple(names) and out.stamp == 3.0
    np.testing.assert_array_equal(out.values.reshape(n, len(names)), values)


def test_adapter_helpers_round_trip_through_message_like_objects():
    arr = encode_neighbour(neighbour())
    dims, offset, data = arr.to_fields()
    assert decode_neighbour(FloatArray.from_fields(dims, offset, list(data)), 100.0, 1, 64, 64) is not None

    classes = [lambda **kw: SimpleNamespace(**kw)] * 3
    msg = arr.to_msg(*classes, rclpy=True)  # rclpy wants array.array('d') for float64[]
    assert msg.data.typecode == "d" and msg.layout.dim[0].label == "lgtc_neighbour/v1"
    # decoders accept message objects directly
    assert decode_neighbour(msg, 100.0, 1, 64, 64) is not None
    padded = FloatArray(arr.dims, np.concatenate([[7.0, 7.0], arr.data]), data_offset=2)
    assert decode_neighbour(padded, 100.0, 1, 64, 64) is not None


def test_default_names():
    assert default_names(3) == ("cf1", "cf2", "cf3")


# ---------------------------------------------------------------- labels

def test_labels_are_human_readable():
    arr = encode_neighbour(neighbour(g=5, f=4))
    assert [(d.label, d.size, d.stride) for d in arr.dims] == [
        ("lgtc_neighbour/v1", 14, 14), ("header:version,agent_id,stamp_s", 3, 3),
        ("position:x,y", 2, 2), ("psi", 5, 5), ("x", 4, 4)]
    assert arr.data[:3].tolist() == [1.0, 2.0, 100.0]
    dem = encode_demands(demands(m=3, r=2))
    assert [(d.label, d.size, d.stride) for d in dem.dims[1:]] == [
        ("header:version,stamp_s", 2, 2), ("consumer_pos:x,y", 6, 2), ("demand", 6, 2),
        ("kinds:0=instantaneous,1=persistent", 2, 2)]
    terms = encode_reward_terms(0.0, ["assignment", "instantaneous_release"], np.zeros((3, 2)))
    assert terms.dims[2] == Dim("terms:assignment,instantaneous_release", 6, 2)
    state = encode_agent_state(0, 0.0, np.zeros(4), np.zeros(3), 1)
    assert [d.label for d in state.dims] == ["lgtc_state/v1", "header:version,agent_id,stamp_s", "x",
                                             "attention", "choice", "supply"]


def test_encoders_reject_programmer_errors():
    with pytest.raises(ValueError):
        encode_neighbour(NeighbourMessage(0, 0.0, np.zeros(3), np.zeros(4), np.zeros(4)))
    with pytest.raises(ValueError):
        encode_demands(DemandBroadcast(0.0, np.zeros((2, 2)), np.zeros((3, 2)), np.zeros(2)))
    with pytest.raises(ValueError):
        encode_reward_terms(0.0, ["a,b"], np.zeros((2, 1)))
    with pytest.raises(ValueError):
        encode_reward_terms(0.0, ["a", "a"], np.zeros((2, 2)))


# ---------------------------------------------------------------- rejections

GOOD = encode_neighbour(neighbour())


def relabel(arr: FloatArray, index: int, label: str) -> FloatArray:
    dims = list(arr.dims)
    dims[index] = dataclasses.replace(dims[index], label=label)
    return dataclasses.replace(arr, dims=tuple(dims))


CASES = {
    "bad_label": [relabel(GOOD, 0, "lgtc_demands/v1"), relabel(GOOD, 3, "phi"),
                  encode_demands(demands()), FloatArray((), np.zeros(0))],
    "bad_version": [relabel(GOOD, 0, "lgtc_neighbour/v2"), with_data(GOOD, 0, 2.0)],
    "bad_length": [dataclasses.replace(GOOD, data=GOOD.data[:-1]),
                   encode_neighbour(neighbour(g=63)), encode_neighbour(neighbour(f=65))],
    "non_finite": [with_data(GOOD, 5, math.nan), with_data(GOOD, 70, math.inf),
                   with_data(GOOD, 2, -math.inf)],
    "bad_value": [with_data(GOOD, 1, 1.5), with_data(GOOD, 1, -1.0)],
    "stale": [encode_neighbour(neighbour(stamp=99.0))],
    "future": [encode_neighbour(neighbour(stamp=100.0 + 2 * FUTURE_TOLERANCE_S))],
    "malformed": [None, "garbage", 42, SimpleNamespace(layout=None, data=[1.0]),
                  FloatArray((Dim(None, 1, 1),), np.zeros(1)),  # type: ignore[arg-type]
                  FloatArray(GOOD.dims, np.array(["x"] * GOOD.data.size, dtype=object))],
}


@pytest.mark.parametrize("reason", list(CASES))
def test_every_rejection_is_counted(reason):
    stats = DecodeStats()
    for arr in CASES[reason]:
        assert decode_neighbour(arr, now=100.0, max_age=0.5, expect_g=64, expect_f=64, stats=stats) is None
    assert stats.counts == {reason: len(CASES[reason])} and stats.rejected == len(CASES[reason])
    assert set(stats.counts) <= set(REASONS)


def test_demand_rejections():
    stats = DecodeStats()
    good = encode_demands(demands(m=3, r=2))
    assert decode_demands(good, 100.0, 0.5, 3, 2, stats) is not None
    assert decode_demands(good, 100.0, 0.5, 4, 2, stats) is None          # bad_length (M)
    assert decode_demands(with_data(good, 9, -1.0), 100.0, 0.5, 3, 2, stats) is None  # negative demand
    assert decode_demands(with_data(good, -1, 2.0), 100.0, 0.5, 3, 2, stats) is None  # kind 2
    assert decode_demands(with_data(good, 3, math.nan), 100.0, 0.5, 3, 2, stats) is None
    assert decode_demands(good, 101.0, 0.5, 3, 2, stats) is None
    assert decode_demands(GOOD, 100.0, 0.5, 3, 2, stats) is None
    assert stats.counts == {"ok": 1, "bad_length": 1, "bad_value": 2, "non_finite": 1, "stale": 1,
                            "bad_label": 1}


def test_state_and_terms_rejections():
    stats = DecodeStats()
    state = encode_agent_state(0, 5.0, np.zeros(4), np.zeros(3), 2)
    assert decode_agent_state(state, 4, 2, stats) is None                   # attention length
    assert decode_agent_state(encode_agent_state(0, 5.0, np.zeros(4), np.zeros(3), 3), stats=stats) is None
    assert decode_agent_state(state, stats=stats, now=100.0, max_age=1.0) is None
    terms = encode_reward_terms(0.0, ["a", "b"], np.zeros((3, 2)))
    assert decode_reward_terms(terms, expect_n=4, stats=stats) is None
    assert decode_reward_terms(relabel(terms, 2, "terms:a,a"), stats=stats) is None
    assert stats.counts == {"bad_length": 2, "bad_value": 1, "stale": 1, "bad_label": 1}


def test_supply_round_trip_and_rejections():
    stats = DecodeStats()
    good = encode_supply(SupplyStatus(3, 100.0, np.array([0.0, 0.25, 0.5]), True))
    got = decode_supply(good, 100.1, 0.5, 3, stats)
    assert (got.agent_id, got.stamp, got.active) == (3, 100.0, True) and got.supply.tolist() == [0.0, 0.25, 0.5]
    landed = decode_supply(encode_supply(SupplyStatus(3, 100.0, np.zeros(3), False)), 100.0, 0.5, 3, stats)
    assert landed.active is False
    assert decode_supply(good, 100.0, 0.5, 4, stats) is None                        # r mismatch
    assert decode_supply(with_data(good, 4, -0.1), 100.0, 0.5, 3, stats) is None     # negative supply
    assert decode_supply(with_data(good, -1, 0.5), 100.0, 0.5, 3, stats) is None     # active not 0/1
    assert decode_supply(good, 101.0, 0.5, 3, stats) is None                         # stale
    assert decode_supply(encode_neighbour(neighbour()), 100.0, 0.5, 3, stats) is None  # another schema
    assert stats.counts == {"ok": 2, "bad_length": 1, "bad_value": 2, "stale": 1, "bad_label": 1}


VALID = [encode_neighbour(neighbour(g=3, f=2)), encode_demands(demands(m=2, r=2)),
         encode_agent_state(1, 100.0, np.zeros(3), np.ones(2), 1),
         encode_reward_terms(100.0, ["a", "b"], np.ones((2, 2))),
         encode_supply(SupplyStatus(1, 100.0, np.ones(2), True))]


@st.composite
def mutated(draw) -> FloatArray:
    """A valid payload with a few random mutations: reaches every check, not just the first."""
    arr = draw(st.sampled_from(VALID))
    dims, offset, data = arr.to_fields()
    data = list(data)
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["size", "stride", "label", "value", "length", "offset"]))
        k = draw(st.integers(0, len(dims) - 1))
        label, size, stride = dims[k]
        if what == "size":
            dims[k] = (label, draw(st.integers(-3, 40)), stride)
        elif what == "stride":
            dims[k] = (label, size, draw(st.integers(-3, 10)))
        elif what == "label":
            dims[k] = (draw(st.sampled_from([d[0] for v in VALID for d in v.to_fields()[0]] + ["", "/v"])),
                       size, stride)
        elif what == "value" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.floats() | st.integers(-3, 3).map(float))
        elif what == "length":
            data = data[:draw(st.integers(0, len(data) + 2))] + [0.0] * draw(st.integers(0, 2))
        else:
            offset = draw(st.integers(-2, 3))
    return FloatArray.from_fields(dims, offset, data)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(arr=mutated(), now=st.sampled_from([None, 100.0, 0.0, 1e9]))
def test_decoders_never_raise_on_garbage(arr, now):
    stats = DecodeStats()
    decode_neighbour(arr, now, 1.0, None, None, stats)
    decode_demands(arr, now, 1.0, None, None, stats)
    decode_agent_state(arr, stats=stats, now=now)
    decode_reward_terms(arr, stats=stats, now=now)
    decode_supply(arr, now, 1.0, None, stats)
    assert sum(stats.counts.values()) == 5 and set(stats.counts) <= set(REASONS)


def test_rejection_logging_is_rate_limited(caplog):
    stats = DecodeStats()
    bad = with_data(GOOD, 5, math.nan)
    with caplog.at_level(logging.DEBUG, logger="lgtc_ros.comm"):
        for _ in range(100):
            decode_neighbour(bad, 100.0, 0.5, 64, 64, stats)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 7  # 1, 2, 4, ..., 64
    assert "non_finite" in warnings[0].getMessage() and stats.counts["non_finite"] == 100


def test_stats_none_uses_the_shared_default():
    from lgtc_ros.comm import DEFAULT_STATS
    before = DEFAULT_STATS.counts["stale"]
    assert decode_neighbour(GOOD, 200.0, 0.5, 64, 64) is None
    assert DEFAULT_STATS.counts["stale"] == before + 1


# ---------------------------------------------------------------- neighbourhood rule

@pytest.mark.parametrize("seed", range(20))
def test_neighbours_within_equals_world_neighbour_mask(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    pos = rng.uniform(-1, 1, (n, 2))
    active = rng.random(n) < 0.8
    radius = float(rng.uniform(0.1, 1.5))
    want = neighbour_mask(torch.from_numpy(pos)[None], torch.from_numpy(active)[None], radius)[0].numpy()
    np.testing.assert_array_equal(neighbours_within(pos, radius, active), want)
    all_on = neighbour_mask(torch.from_numpy(pos)[None], torch.ones(1, n, dtype=torch.bool), radius)[0]
    np.testing.assert_array_equal(neighbours_within(pos, radius), all_on.numpy())


def test_neighbours_within_boundary_and_shape():
    pos = np.array([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0]])
    got = neighbours_within(pos, 0.5)
    assert got.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    with pytest.raises(ValueError):
        neighbours_within(np.zeros((3, 3)), 1.0)


# ---------------------------------------------------------------- inbox bundle (radio -> drone)

def test_inbox_round_trip_empty_and_rows():
    from lgtc_ros.comm import decode_inbox, encode_inbox

    msgs = [neighbour(agent=a, stamp=99.95, g=5, f=4, seed=a) for a in (3, 1)]
    stats = DecodeStats()
    got = decode_inbox(encode_inbox(100.0, msgs), 100.0, 0.5, 5, 4, stats)
    assert [m.agent_id for m in got] == [3, 1] and stats.counts == {"ok": 1}
    for a, b in zip(got, msgs):
        for name in ("position", "psi", "x"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert decode_inbox(encode_inbox(100.0, []), 100.0, 0.5, 5, 4, stats) == []
    assert encode_inbox(100.0, []).dims[0].label == "lgtc_inbox/v1"


def test_inbox_rejects_wrong_width_and_drops_stale_rows_only():
    from lgtc_ros.comm import decode_inbox, encode_inbox

    stats = DecodeStats()
    bundle = encode_inbox(100.0, [neighbour(agent=1, stamp=99.95, g=5, f=4)])
    assert decode_inbox(bundle, 100.0, 0.5, 6, 4, stats) is None and stats.counts["bad_length"] == 1
    mixed = encode_inbox(100.0, [neighbour(agent=1, stamp=99.95, g=5, f=4), neighbour(agent=2, stamp=98.0, g=5, f=4)])
    got = decode_inbox(mixed, 100.0, 0.5, 5, 4, stats)
    assert [m.agent_id for m in got] == [1] and stats.counts["stale"] == 1
    assert decode_inbox(with_data(mixed, 5, np.nan), 100.0, 0.5, 5, 4, stats) is None
    with pytest.raises(ValueError, match="differ"):
        encode_inbox(1.0, [neighbour(g=5, f=4), neighbour(g=6, f=4)])


def test_cbf_status_round_trip():
    from lgtc_ros.comm import CbfStatus, decode_cbf_status, encode_cbf_status

    msg = CbfStatus(12.5, {"calls": 40, "fallback": 2}, np.array([0, 2, 0]), np.array([0.01, 0.02, 0.0]))
    got = decode_cbf_status(encode_cbf_status(msg))
    assert got.counters == {"calls": 40, "fallback": 2} and got.stamp == 12.5
    np.testing.assert_array_equal(got.fallbacks, [0, 2, 0])
    np.testing.assert_array_equal(got.uncertainty, msg.uncertainty)
    with pytest.raises(ValueError, match="disagree"):
        encode_cbf_status(CbfStatus(0.0, {"calls": 1}, np.zeros(2), np.zeros(3)))
