"""Every entry point a file or a packet reaches, fuzzed (Hypothesis, derandomized, bounded):
scenario YAML, the wire decoders, model files, rosbag2 folders, one drone's decision and the swarm's
safety filter. The outcome is always a typed error naming the file, or a counted drop, or a finite
answer: never an uncaught exception, never a NaN command.

Every bug fuzzing found is fixed and kept as a regression test with its minimal input
(`test_regression_*`): a huge integer, unknown keys of mixed types and a non-UTF-8 file in a
scenario; finite inputs beyond float32 range into a drone's decision (a NaN command, then a
poisoned recurrent state); a huge clearance overflowing the CBF's reach. See docs/RELIABILITY.md.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as _event
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st

from lgtc_ros import comm
from lgtc_ros.comm import REASONS, DecodeStats, DemandBroadcast, FloatArray, NeighbourMessage, SupplyStatus
from lgtc_ros.scenario import Scenario, ScenarioError, config_dir, load_scenario

ROOT = Path(__file__).resolve().parent.parent
FUZZ = dict(derandomize=True, database=None, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

KNOWN_BUGS: dict = {}
"""Failures the properties tolerate by name: none left (the bugs fuzzing found are fixed)."""


def event(what: str) -> None:
    """Count an outcome (`pytest --hypothesis-show-statistics` lists them) when inside a property."""
    if currently_in_test_context():
        _event(what)


def known_bug(exc: BaseException, *prefixes: str) -> str | None:
    return next((k for k, match in KNOWN_BUGS.items() if k.startswith(prefixes) and match(exc)), None)


@pytest.fixture(autouse=True)
def _quiet():
    """Rejections are logged (rate-limited) by design; thousands of fuzzed inputs need no log."""
    logging.disable(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    logging.disable(logging.NOTSET)


# ============================================================================ scenario YAML

SCENARIO_FILES = sorted((config_dir() / "scenarios").glob("*.yaml"))
PAPER_TEXT = (config_dir() / "scenarios" / "paper_10x4.yaml").read_bytes()
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.integers(-10**30, 10**30), st.sampled_from([10**400, -10**400]),
    st.floats(), st.text(max_size=6), st.sampled_from(["instantaneous", "persistent", "lone", "discharge"]),
    st.lists(st.one_of(st.integers(-2, 12), st.floats(-2, 2)), max_size=4),
    st.lists(st.lists(st.floats(-2, 2), max_size=3), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-2, 2)), st.integers(-2, 2), max_size=3),
)


def _mutate_tree(draw, node, depth: int = 0):
    """One random change somewhere in a parsed YAML tree (replace, delete, add a key, resize a list)."""
    if isinstance(node, dict) and node and depth < 4 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node, key=str)))
        node[key] = _mutate_tree(draw, node[key], depth + 1)
        return node
    if isinstance(node, list) and node and depth < 4 and draw(st.booleans()):
        k = draw(st.integers(0, len(node) - 1))
        node[k] = _mutate_tree(draw, node[k], depth + 1)
        return node
    op = draw(st.sampled_from(["replace", "delete", "add", "resize"]))
    if op == "delete" and isinstance(node, dict) and node:
        del node[draw(st.sampled_from(sorted(node, key=str)))]
        return node
    if op == "add" and isinstance(node, dict):
        keys = st.one_of(st.text(max_size=6), st.integers(-2, 2), st.sampled_from(sorted(node, key=str) or ["x"]))
        node[draw(keys)] = draw(JUNK)
        return node
    if op == "resize" and isinstance(node, list):
        return node[:draw(st.integers(0, len(node)))] + node[:draw(st.integers(0, 2))]
    return draw(JUNK)


@st.composite
def scenario_bytes(draw) -> bytes:
    """A shipped scenario with a few tree mutations, then possibly a few byte mutations."""
    text = draw(st.sampled_from(SCENARIO_FILES)).read_bytes()
    tree = yaml.safe_load(text)
    for _ in range(draw(st.integers(0, 3))):
        tree = _mutate_tree(draw, tree)
    raw = yaml.safe_dump(tree, sort_keys=False).encode() if draw(st.booleans()) else text
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["truncate", "flip", "insert"]))
        k = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "truncate":
            raw = raw[:k]
        elif op == "flip" and raw:
            raw = raw[:k] + bytes([raw[k] ^ draw(st.integers(1, 255))]) + raw[k + 1:]
        else:
            raw = raw[:k] + draw(st.binary(min_size=1, max_size=8)) + raw[k:]
    return raw


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


HUGE_V_MAX = PAPER_TEXT.replace(b"v_max: 0.5", b"v_max: 1" + b"0" * 400)
MIXED_KEYS = PAPER_TEXT.replace(b"random:\n", b"random:\n  1: 2\n  zz: 3\n")
NOT_UTF8 = PAPER_TEXT.replace(b"# The paper", b"\xff\xfe The paper")
BEYOND_UNICODE = b'"\\x1F\\U10010000'  # a double-quoted escape past U+10FFFF


@settings(max_examples=250, **FUZZ)
@given(raw=scenario_bytes())
@example(raw=HUGE_V_MAX).via("regression: found by this test")
@example(raw=MIXED_KEYS).via("regression: found by this test")
@example(raw=NOT_UTF8).via("regression: found by this test")
@example(raw=BEYOND_UNICODE).via("regression: found by this test")
@example(raw=b"").via("regression")
@example(raw=b"- 1\n- 2\n").via("regression")
def test_scenario_yaml_loads_or_names_the_file(workdir, raw):
    path = workdir / "fuzzed_scenario.yaml"
    path.write_bytes(raw)
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        assert str(path) in str(exc), str(exc)
        event("ScenarioError")
        return
    except Exception as exc:  # noqa: BLE001
        bug = known_bug(exc, "scenario/")
        assert bug, f"{type(exc).__name__}: {exc}"
        event(f"known bug {bug}")
        return
    event("loaded")
    assert isinstance(scenario, Scenario) and scenario.n_agents >= scenario.n_consumers >= 1


@pytest.mark.parametrize("raw", [HUGE_V_MAX, PAPER_TEXT.replace(b"n_agents: 10", b"n_agents: 1" + b"0" * 400)],
                         ids=["float-field", "n_agents"])
def test_regression_scenario_huge_integer_is_a_scenario_error(workdir, raw):
    (workdir / "huge.yaml").write_bytes(raw)
    with pytest.raises(ScenarioError, match="huge.yaml"):
        load_scenario(workdir / "huge.yaml")


def test_regression_scenario_unknown_keys_of_mixed_types(workdir):
    (workdir / "mixed.yaml").write_bytes(MIXED_KEYS)
    with pytest.raises(ScenarioError, match="mixed.yaml"):
        load_scenario(workdir / "mixed.yaml")


def test_regression_scenario_not_utf8(workdir):
    (workdir / "binary.yaml").write_bytes(NOT_UTF8)
    with pytest.raises(ScenarioError, match="binary.yaml"):
        load_scenario(workdir / "binary.yaml")


def test_regression_scenario_escape_beyond_unicode(workdir):
    """PyYAML's scanner raises a bare ValueError (chr() out of range), not a YAMLError."""
    (workdir / "escape.yaml").write_bytes(BEYOND_UNICODE)
    with pytest.raises(ScenarioError, match="escape.yaml: not valid YAML"):
        load_scenario(workdir / "escape.yaml")


# ============================================================================ wire decoders

G, F, M, R = 16, 8, 4, 4
NOW, MAX_AGE = 1000.0, 0.5
SPECIAL = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1.5, 2.0, 1e308, -1e308, 5e-324])
IN_FLOAT32 = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1.5, 2.0, 1e6, -1e6, 5e-324])
STAMPS = st.one_of(st.just(NOW), st.floats(NOW - 2, NOW + 1), st.sampled_from([0.0, -1e9, 1e300, math.nan, NOW - 1e-9]))


def valid(schema: str, draw) -> FloatArray:
    stamp = draw(STAMPS)
    vals = st.floats(-10, 10)
    if schema == "neighbour":
        return comm.encode_neighbour(NeighbourMessage(draw(st.integers(0, 12)), stamp, np.array(draw(st.lists(
            vals, min_size=2, max_size=2))), np.full(G, draw(vals)), np.full(F, draw(vals))))
    if schema == "demands":
        return comm.encode_demands(DemandBroadcast(stamp, np.full((M, 2), draw(vals)),
                                                   np.full((M, R), abs(draw(vals))), np.array([0, 0, 1, 1])))
    if schema == "supply":
        return comm.encode_supply(SupplyStatus(draw(st.integers(0, 3)), stamp, np.full(R, abs(draw(vals))),
                                               draw(st.booleans())))
    k = draw(st.integers(0, 4))
    rows = [NeighbourMessage(draw(st.integers(0, 12)), draw(STAMPS), np.full(2, draw(vals)), np.full(G, draw(vals)),
                             np.full(F, draw(vals))) for _ in range(k)]
    return comm.encode_inbox(stamp, rows)


@st.composite
def wire_payload(draw, schema: str | None = None, extreme: bool = True):
    """A valid payload of a schema, then: random bytes for data, NaN/inf, a wrong version (label or
    header), wrong lengths (data or a dim), a bad offset; or a message-like object of wrong types.
    `extreme`: special values include finite ones beyond float32 (+-1e308) and random bytes (any
    exponent); without, garbage stays within what float32 holds (see `onboard/extreme`)."""
    schema = schema or draw(st.sampled_from(["neighbour", "demands", "supply", "inbox"]))
    if draw(st.integers(0, 9)) == 0:  # a message-like object whose fields have the wrong types
        dim = SimpleNamespace(label=draw(st.one_of(st.none(), st.text(max_size=8), st.just(f"lgtc_{schema}/v1"))),
                              size=draw(st.one_of(st.integers(-2, 40), st.text(max_size=2), st.none())),
                              stride=draw(st.one_of(st.integers(-2, 4), st.floats())))
        offset = draw(st.one_of(st.integers(-1, 2), st.text(max_size=2)))
        data = draw(st.one_of(st.binary(max_size=16), st.lists(st.floats(), max_size=8), st.none()))
        return SimpleNamespace(layout=SimpleNamespace(dim=[dim] * draw(st.integers(0, 3)), data_offset=offset), data=data)
    dims, offset, data = valid(schema, draw).to_fields()
    data = np.array(data, dtype=np.float64)
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["bytes"] * extreme + ["special", "version", "label_version", "truncate",
                                                            "extend", "dim", "offset", "stamp"]))
        if what == "bytes":
            raw = draw(st.binary(min_size=0, max_size=8 * (data.size + 2)))
            data = np.frombuffer(raw[:len(raw) // 8 * 8], dtype=np.float64).copy()
        elif what == "special" and data.size:
            data[draw(st.integers(0, data.size - 1))] = draw(SPECIAL if extreme else IN_FLOAT32)
        elif what == "version" and data.size:
            data[0] = draw(st.sampled_from([0.0, 2.0, 1.5, -1.0, math.nan]))
        elif what == "label_version":
            dims[0] = (dims[0][0].replace("/v1", draw(st.sampled_from(["/v2", "/v", "", "/v1.0"]))), *dims[0][1:])
        elif what == "truncate":
            data = data[:draw(st.integers(0, max(data.size - 1, 0)))]
        elif what == "extend":
            data = np.concatenate([data, np.zeros(draw(st.integers(1, 3)))])
        elif what == "dim":
            k = draw(st.integers(0, len(dims) - 1))
            dims[k] = (dims[k][0], draw(st.integers(-3, 60)), draw(st.integers(-2, 30)))
        elif what == "offset":
            offset = draw(st.integers(-3, 4))
        elif what == "stamp" and data.size > 2:
            data[2 if schema in ("neighbour", "supply") else 1] = draw(STAMPS)
    return FloatArray.from_fields(dims, offset, data)


def _arrays(value) -> list[np.ndarray]:
    if isinstance(value, list):
        return [a for m in value for a in _arrays(m)]
    return [np.asarray(v, dtype=np.float64) for v in vars(value).values()
            if isinstance(v, (np.ndarray, float, int)) and not isinstance(v, bool)]


DECODERS = {
    "neighbour": lambda p, now, s: comm.decode_neighbour(p, now, MAX_AGE, G, F, s),
    "demands": lambda p, now, s: comm.decode_demands(p, now, MAX_AGE, M, R, s),
    "supply": lambda p, now, s: comm.decode_supply(p, now, MAX_AGE, R, s),
    "inbox": lambda p, now, s: comm.decode_inbox(p, now, MAX_AGE, G, F, s),
}


@settings(max_examples=400, **FUZZ)
@given(payload=wire_payload(), now=st.sampled_from([NOW, None, 0.0, math.nan]))
@example(payload=comm.encode_inbox(NOW, [NeighbourMessage(3, NOW - 5.0, np.zeros(2), np.zeros(G), np.zeros(F))]),
         now=NOW).via("regression: a stale row inside a fresh bundle")
def test_decoders_return_a_finite_value_or_a_counted_drop(payload, now):
    """Every decoder on every payload (its own schema and the others): None or a value, each call
    counted under a known reason; a value is all finite, and fresh when a clock is given."""
    for name, decode in DECODERS.items():
        stats = DecodeStats()
        got = decode(payload, now, stats)
        assert sum(stats.counts.values()) >= 1 and set(stats.counts) <= set(REASONS), (name, stats.counts)
        if got is None:
            assert stats.rejected >= 1
            event(f"{name}: " + ",".join(sorted(k for k in stats.counts if k != "ok")))
            continue
        event(f"{name}: ok")
        assert stats.counts["ok"] == 1
        for a in _arrays(got):
            assert np.isfinite(a).all(), (name, got)
        if now is not None and math.isfinite(now):
            for m in got if isinstance(got, list) else [got]:
                assert now - MAX_AGE <= m.stamp <= now + comm.FUTURE_TOLERANCE_S, (name, m.stamp)


# ============================================================================ model files

MODEL = ROOT / "models" / "lgtc_discharge_5x3.pt"
MODEL_BYTES, META_TEXT = MODEL.read_bytes(), MODEL.with_suffix(".json").read_text()
DISCHARGE = load_scenario(config_dir() / "scenarios" / "discharge_5x3.yaml")


@st.composite
def corrupted_pt(draw) -> bytes:
    raw = MODEL_BYTES
    op = draw(st.sampled_from(["truncate", "flip", "overwrite", "append", "zero_tail"]))
    k = draw(st.integers(0, len(raw) - 1))
    if op == "truncate":
        return raw[:k]
    if op == "flip":
        return raw[:k] + bytes([raw[k] ^ draw(st.integers(1, 255))]) + raw[k + 1:]
    if op == "overwrite":
        junk = draw(st.binary(min_size=1, max_size=64))
        return raw[:k] + junk + raw[k + len(junk):]
    if op == "append":
        return raw + draw(st.binary(min_size=1, max_size=64))
    return raw[:k] + bytes(len(raw) - k)


def _json_mutation(draw, meta):
    """Replace, delete or retype one field of the metadata tree."""
    node = meta
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(st.integers(0, len(node) - 1))
        child = node[key]
        if not isinstance(child, (dict, list)) or not child or draw(st.booleans()):
            break
        node = child  # descend: the key is drawn again, in the child
    else:
        key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(st.integers(0, len(node) - 1))
    if isinstance(node, dict) and draw(st.booleans()):
        del node[key]
    else:
        node[key] = draw(JUNK)
    return meta


@st.composite
def corrupted_json(draw) -> str:
    text = META_TEXT
    op = draw(st.sampled_from(["truncate", "flip", "field", "field", "field"]))
    if op == "field":
        return json.dumps(_json_mutation(draw, json.loads(text)))
    k = draw(st.integers(0, len(text) - 1))
    if op == "truncate":
        return text[:k]
    return text[:k] + draw(st.characters(codec="utf-8")) + text[k + 1:]


def _load_model(workdir: Path, pt: bytes, meta: str):
    from lgtc_ros.policy.export import load
    from lgtc_ros.policy.learned import LearnedPolicy

    path = workdir / "fuzzed_model.pt"
    path.write_bytes(pt)
    path.with_suffix(".json").write_text(meta)
    for call in (lambda: load(path), lambda: LearnedPolicy.load(path, DISCHARGE)):
        try:
            call()
        except ValueError as exc:  # ModelError (a ValueError) and its kinds; the message names the file
            assert "fuzzed_model" in str(exc) and "\n" not in str(exc).strip(), repr(exc)
            event(type(exc).__name__)
        else:
            event("loaded")


@settings(max_examples=60, **FUZZ)
@given(pt=corrupted_pt())
@example(pt=b"").via("regression")
@example(pt=MODEL_BYTES[:100]).via("regression: a truncated archive")
@example(pt=b"PK\x03\x04" + bytes(60)).via("regression: a zip header and nothing else")
def test_a_corrupt_model_file_is_a_value_error_naming_it(workdir, pt):
    _load_model(workdir, pt, META_TEXT)


@settings(max_examples=80, **FUZZ)
@given(meta=corrupted_json())
@example(meta="").via("regression")
@example(meta="[]").via("regression")
@example(meta=META_TEXT.replace('"M": 3', '"M": "3"')).via("regression")
def test_corrupt_model_metadata_is_a_value_error_naming_it(workdir, meta):
    _load_model(workdir, MODEL_BYTES, meta)


# ============================================================================ bag folders

@pytest.fixture(scope="module")
def bag(workdir) -> Path:
    from lgtc_ros.bags import BagRecorder

    n, rng = 3, np.random.default_rng(0)
    path = workdir / "mission"
    with BagRecorder(path, n, metadata={"scenario": "fuzz"}) as rec:
        for k in range(8):
            t = k * 0.05
            pos = rng.uniform(-1, 1, (n, 2))
            msgs = [NeighbourMessage(i, t, pos[i], np.ones(4), np.ones(3)) for i in range(n)]
            rec.write_tick(t, pos, np.ones(n, bool), np.zeros((n, 2)), np.zeros((n, 2)), msgs,
                           DemandBroadcast(t, np.zeros((2, 2)), np.ones((2, 2)), np.array([0, 1])),
                           [(np.ones(3), np.array([0.5, 0.5]), 0)] * n, (["a", "b"], np.zeros((n, 2))))
    return path


def _copy_bag(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


@settings(max_examples=40, **FUZZ)
@given(cut=st.floats(0.0, 1.0, exclude_max=True), which=st.sampled_from(["mcap", "metadata.yaml"]))
@example(cut=0.0, which="mcap").via("regression")
@example(cut=0.99, which="mcap").via("regression: only the summary lost")
@example(cut=0.9999999999999998, which="metadata.yaml").via("regression: only the last newline lost")
def test_a_truncated_bag_is_a_bag_error(workdir, bag, cut, which):
    from lgtc_ros.bags import BagError, read_bag

    path = _copy_bag(bag, workdir / "fuzzed_bag")
    target = next(path.glob("*.mcap")) if which == "mcap" else path / "metadata.yaml"
    raw = target.read_bytes()
    kept = raw[:int(cut * len(raw))]
    target.write_bytes(kept)
    if which == "metadata.yaml" and kept.rstrip() == raw.rstrip():
        read_bag(path)  # only trailing whitespace cut: the same document
        return
    with pytest.raises(BagError, match="fuzzed_bag"):
        read_bag(path)


@settings(max_examples=25, **FUZZ)
@given(drop=st.sets(st.integers(0, 100), min_size=1, max_size=4))
def test_a_bag_missing_topics_is_a_bag_error(workdir, bag, drop):
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from lgtc_ros.bags import BagError, read_bag, topics, typestore

    specs = list(topics(3).values())
    gone = {specs[k % len(specs)].topic for k in drop}
    path = workdir / "fuzzed_partial_bag"
    if path.exists():
        shutil.rmtree(path)
    with Reader(bag) as reader, Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        keep = [c for c in reader.connections if c.topic not in gone]
        new = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=typestore()) for c in keep}
        for c, ns, data in reader.messages(keep):
            writer.write(new[c.id], ns, data)
    if gone == {"/lgtc/reward_terms"}:  # the one optional topic
        assert read_bag(path).reward_terms == {}
        return
    with pytest.raises(BagError, match="fuzzed_partial_bag"):
        read_bag(path)


# ============================================================================ one drone's decision

@pytest.fixture(scope="module")
def controller_parts(model_path):
    from lgtc_ros.frames import ArenaFrame
    from lgtc_ros.runtime.drone import load_drone_modules

    torch.set_num_threads(1)
    scenario = load_scenario(config_dir() / "scenarios" / "paper_10x4.yaml")
    (module,), _ = load_drone_modules(model_path, scenario, 1, separate=False)
    assert (module.feature_dim, module.state_dim, scenario.n_consumers, scenario.n_resources) == (G, F, M, R)
    return module, ArenaFrame.from_scenario(scenario), scenario


def controller(parts):
    from lgtc_ros.runtime.drone import DroneAgent
    from lgtc_ros.runtime.onboard import OnboardController

    module, frame, s = parts
    return OnboardController(DroneAgent(0, module, module.state_dim, module.feature_dim), frame, s.n_consumers,
                             s.n_resources)


PLAUSIBLE = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf, -math.inf, 1e20, 1e39, 1e300]))
"""Garbage within what float32 holds: larger finite values are the `onboard/extreme` bug below."""


@st.composite
def drone_events(draw):
    """A stream of inputs as they come off the wire (mutated payloads, odd poses, clocks that jump back)."""
    events, now = [], NOW
    if draw(st.integers(0, 3)):  # mostly a drone that is ready, so garbage meets the decision itself
        events += [("pose", np.array([draw(st.floats(-2, 2)), draw(st.floats(-2, 2)), 1.0])),
                   ("demands", _restamp(valid("demands", draw), now, "demands")),
                   ("supply", _restamp(valid("supply", draw), now, "supply", active=True)), ("tick", now)]
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["pose", "demands", "supply", "inbox", "tick", "tick", "reset"]))
        if kind == "pose":
            shape = draw(st.sampled_from([(3,), (3,), (2,), (4,), (), (2, 2)]))
            events.append(("pose", np.array(draw(st.lists(PLAUSIBLE, min_size=math.prod(shape),
                                                           max_size=math.prod(shape)))).reshape(shape)))
        elif kind == "tick":
            now = now + draw(st.sampled_from([0.05, 0.05, 0.0, -0.05, 1.0, -1.0]))
            events.append(("tick", now))
        elif kind == "reset":
            events.append(("reset", None))
        else:
            good = draw(st.booleans())  # a valid one half of the time, so ticks get past the Skips
            payload = valid(kind, draw) if good else draw(wire_payload(kind, extreme=False))
            if good and kind in ("demands", "supply"):
                payload = _restamp(payload, NOW, kind)
            events.append((kind, payload))
    return events


def _restamp(arr: FloatArray, now: float, kind: str, active: bool | None = None) -> FloatArray:
    dims, offset, data = arr.to_fields()
    data = np.array(data)
    data[2 if kind == "supply" else 1] = now
    if kind == "supply":
        data[1] = 0.0  # this drone's own status
        if active is not None:
            data[-1] = float(active)
    return FloatArray.from_fields(dims, offset, data)


def _check_tick(out, s, frame) -> None:
    from lgtc_ros.runtime.onboard import Skip, TickOutput

    if isinstance(out, Skip):
        assert out.reason in ("no_pose", "no_demands", "no_supply", "landed", "non_finite")  # the last: proposed fix
        event(f"skip {out.reason}")
        return
    event("decided")
    assert isinstance(out, TickOutput)
    v = out.v_nominal_m_s
    assert v.shape == (2,) and np.isfinite(v).all(), v
    assert np.hypot(*v) <= frame.velocity_to_metres(np.array([s.v_max, 0.0]))[0] * (1 + 1e-5)
    assert np.isfinite(out.message.data).all() and np.isfinite(out.decision.x).all()


@settings(max_examples=120, **FUZZ)
@given(events=drone_events())
def test_a_drone_fed_garbage_commands_a_finite_velocity_or_skips(controller_parts, events):
    c = controller(controller_parts)
    _, frame, s = controller_parts
    for kind, value in events:
        if kind == "pose":
            c.on_pose(value)
        elif kind == "demands":
            c.on_demands(value, NOW)
        elif kind == "supply":
            c.on_supply(value, NOW)
        elif kind == "inbox":
            c.on_inbox(value, NOW)
        elif kind == "reset":
            c.reset()
        else:
            _check_tick(c.tick(value), s, frame)
    _check_tick(c.tick(NOW), s, frame)
    assert set(c.stats.counts) <= set(REASONS)


@settings(max_examples=60, **FUZZ)
@given(stamps=st.lists(st.tuples(st.integers(1, 4), st.floats(NOW - 1.0, NOW + 0.05)), min_size=1, max_size=12))
def test_stamps_going_backwards_never_replace_a_newer_message(controller_parts, stamps):
    """Bundles arriving out of order: per sender the newest stamp is the one that counts; the
    neighbours used are the senders with a message within max_message_age_s."""
    c = controller(controller_parts)
    for sender, stamp in stamps:
        c.on_inbox(comm.encode_inbox(NOW, [NeighbourMessage(sender, stamp, np.zeros(2), np.zeros(G), np.zeros(F))]),
                   NOW)
    newest = {}
    for sender, stamp in stamps:
        newest[sender] = max(newest.get(sender, -math.inf), stamp)
    assert c.held_stamps() == {k: t for k, t in newest.items()
                               if NOW - MAX_AGE <= t <= NOW + comm.FUTURE_TOLERANCE_S}


# values beyond float32 (finite in float64, so every decoder accepts them): once a NaN command
EXTREME = {
    "pose_1e20_m": ("pose", 1e20), "consumer_pos_1e20": ("consumer_pos", 1e20), "demand_1e39": ("demand", 1e39),
    "neighbour_x_1e39": ("neighbour_x", 1e39), "supply_1e39": ("supply", 1e39),
}


def _extreme_tick(parts, field: str, value: float, then_normal: bool):
    c = controller(parts)
    _, frame, s = parts

    def feed(now, big):
        c.on_pose(np.array([value if big and field == "pose" else 0.1, 0.2, 1.0]))
        c.on_demands(comm.encode_demands(DemandBroadcast(
            now, np.full((M, 2), value if big and field == "consumer_pos" else 0.1),
            np.full((M, R), value if big and field == "demand" else 0.5), np.array([0, 0, 1, 1]))), now)
        c.on_supply(comm.encode_supply(SupplyStatus(0, now, np.full(R, value if big and field == "supply" else 0.3),
                                                    True)), now)
        c.on_inbox(comm.encode_inbox(now, [NeighbourMessage(1, now, np.array([0.3, 0.3]), np.full(G, 0.1),
                                                            np.full(F, value if big and field == "neighbour_x"
                                                                    else 0.1))]), now)
        return c.tick(now)

    out = feed(NOW, True)
    if then_normal:  # the recurrent state must not stay poisoned by one bad tick
        out = feed(NOW + 0.05, False)
    _check_tick(out, s, frame)


@pytest.mark.parametrize("case", sorted(EXTREME))
def test_regression_onboard_extreme_input_gives_no_nan_command(controller_parts, case):
    _extreme_tick(controller_parts, *EXTREME[case], then_normal=False)


def test_regression_onboard_state_recovers_after_one_bad_tick(controller_parts):
    _extreme_tick(controller_parts, "demand", 1e300, then_normal=True)


# ============================================================================ the swarm's safety filter

PAPER = load_scenario(config_dir() / "scenarios" / "paper_10x4.yaml")
SCENARIOS = {n: dataclasses.replace(PAPER, n_agents=n, n_consumers=min(n, 4)) for n in (2, 5, 8)}
FILTERS: dict = {}


def swarm_filter(n: int, form: str):
    from lgtc_ros.safety.swarm import SwarmFilter

    if (n, form) not in FILTERS:  # one filter per shape: its warm starts carry over, as in a node
        FILTERS[n, form] = SwarmFilter(SCENARIOS[n], form)
    return FILTERS[n, form]


BAD = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 1e6])


@st.composite
def swarm_case(draw):
    n = draw(st.sampled_from(sorted(SCENARIOS)))
    pos = np.array(draw(st.lists(st.floats(-1, 1), min_size=2 * n, max_size=2 * n))).reshape(n, 2)
    v = np.array(draw(st.lists(st.floats(-0.5, 0.5), min_size=2 * n, max_size=2 * n))).reshape(n, 2)
    for _ in range(draw(st.integers(0, 3))):
        pos[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = draw(BAD)
    form = draw(st.sampled_from(["decentralized", "centralized", "off"]))
    if form != "off" and draw(st.booleans()):
        v[draw(st.integers(0, n - 1)), draw(st.integers(0, 1))] = draw(BAD)
    active = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    unc = None
    if draw(st.booleans()):
        unc = np.array(draw(st.lists(st.floats(0, 0.5), min_size=n, max_size=n)))
        if draw(st.booleans()):
            unc[draw(st.integers(0, n - 1))] = draw(st.sampled_from([math.nan, math.inf, 1e300, 1e6]))
    return form, v, pos, active, unc


@settings(max_examples=300, **FUZZ)
@given(case=swarm_case())
@example(case=("decentralized", np.zeros((2, 2)), np.zeros((2, 2)), np.ones(2, bool),
               np.array([1e300, 0.0]))).via("regression: found by this test (swarm/reach-overflow)")
@example(case=("decentralized", np.full((2, 2), 0.1), np.array([[0.0, 0.0], [np.nan, 0.5]]), np.ones(2, bool),
               None)).via("regression")
def test_the_safety_filter_answers_nan_and_inf_poses_with_finite_commands(case):
    form, v, pos, active, unc = case
    n = len(v)
    f = swarm_filter(n, form)
    try:
        out = f(v, pos, active, uncertainty=unc)
    except Exception as exc:  # noqa: BLE001
        bug = known_bug(exc, "swarm/")
        assert bug, f"{type(exc).__name__}: {exc}"
        event(f"known bug {bug}")
        return
    event(f"{form}: {'fallback' if f.last_fallback.any() else 'filtered'}")
    assert out.shape == (n, 2) and np.isfinite(out).all(), out
    assert (out[~active] == 0).all()
    if form != "off":  # "off" passes the nominal commands through
        assert (np.hypot(out[:, 0], out[:, 1]) <= PAPER.v_max * (1 + 1e-6)).all()


def test_regression_swarm_filter_reach_takes_a_huge_uncertainty():
    swarm_filter(2, "decentralized")(np.zeros((2, 2)), np.array([[0.0, 0.0], [0.5, 0.0]]), np.ones(2, bool),
                                     uncertainty=np.array([1e300, 0.0]))


def test_the_reliability_table_cites_tests_that_exist():
    """docs/RELIABILITY.md names a test for every row (file::name): each one exists."""
    import re

    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    cited = set(re.findall(r"(test_\w+\.py)::(\w+)", text))
    assert len(cited) > 30
    missing = [f"{f}::{name}" for f, name in sorted(cited)
               if not re.search(rf"def {name}\(", (ROOT / "test" / f).read_text())]
    assert not missing, missing
    for bug in ("scenario_huge_integer", "swarm_filter_reach", "onboard_extreme_input"):  # the fixed bugs stay cited
        assert f"test_regression_{bug}" in text
