"""The drone's neighbour input (`OnboardController`): messages held as rows and selected with array
operations give what a dict of each sender's newest message gave, however they arrive (one by one,
as a list, as rows of a swarm-wide block)."""
from __future__ import annotations

import numpy as np
import pytest

from lgtc_ros import comm
from lgtc_ros.frames import ArenaFrame
from lgtc_ros.runtime.onboard import OnboardController

G = F = 2
OWN, MAX_AGE, NOW = 3, 0.5, 10.0


class _Agent:
    """Just what the neighbour input needs of a `DroneAgent` (no policy runs here)."""

    agent_id, feature_dim, state_dim = OWN, G, F

    def warmup(self, *_):
        pass


def _controller() -> OnboardController:
    frame = ArenaFrame(origin_m=(0.0, 0.0), half_extent_m=1.0, flight_height_m=1.0)
    return OnboardController(_Agent(), frame, n_consumers=2, n_resources=2, max_message_age_s=MAX_AGE)


def _reference(msgs, now):
    """The former semantics: newest per sender (equal stamps: the later arrival), own echo and stale
    ones left out, in sender order."""
    held = {}
    for m in msgs:
        if m.agent_id != OWN and (m.agent_id not in held or m.stamp >= held[m.agent_id].stamp):
            held[m.agent_id] = m
    return [m for _, m in sorted(held.items()) if now - m.stamp <= MAX_AGE]


@pytest.mark.parametrize("seed", range(4))
def test_rows_select_each_senders_newest_fresh_message_in_sender_order(seed):
    rng = np.random.default_rng(seed)
    c = _controller()
    for _ in range(400):
        msgs = [comm.NeighbourMessage(int(rng.integers(0, 6)), NOW - float(rng.choice([0.0, 0.05, 0.1, 0.5, 0.6])),
                                      rng.random(2), rng.random(G), rng.random(F)) for _ in range(rng.integers(0, 12))]
        k = 0
        while k < len(msgs):  # the same messages in random chunks, through every entry point
            n = int(rng.integers(1, 5))
            part, k = msgs[k:k + n], k + n
            how = int(rng.integers(0, 3))
            if how == 0:
                c.receive_all(part)
            elif how == 1:
                for m in part:
                    c.receive(m)
            else:
                c.receive_rows(np.array([m.agent_id for m in part]), np.array([m.stamp for m in part]),
                               np.stack([m.body() for m in part]).astype(np.float32))
        want = _reference(msgs, NOW)
        assert c.held_stamps() == {m.agent_id: m.stamp for m in _reference(msgs, -np.inf)}
        rows, c._rows = c._rows, []
        senders, stamps, bodies = c._select(rows, NOW)
        assert senders.tolist() == [m.agent_id for m in want]
        assert stamps.tolist() == [m.stamp for m in want]
        want_bodies = np.stack([m.body() for m in want]) if want else np.zeros((0, 2 + G + F))
        assert np.array_equal(bodies.astype(np.float32), want_bodies.astype(np.float32))  # what the policy gets


def test_held_stamps_and_wrong_sizes():
    c = _controller()
    c.receive(comm.NeighbourMessage(1, 9.0, np.zeros(2), np.zeros(G), np.zeros(F)))
    c.receive(comm.NeighbourMessage(1, 9.5, np.zeros(2), np.zeros(G), np.zeros(F)))
    c.receive(comm.NeighbourMessage(1, 9.2, np.zeros(2), np.zeros(G), np.zeros(F)))  # older: does not replace
    c.receive(comm.NeighbourMessage(OWN, 9.9, np.zeros(2), np.zeros(G), np.zeros(F)))  # own echo
    c.receive(comm.NeighbourMessage(2, 9.9, np.zeros(2), np.zeros(G + 1), np.zeros(F)))  # another policy's sizes
    assert c.held_stamps() == {1: 9.5}
    assert c.stats.counts["bad_length"] == 1
    with pytest.raises(ValueError, match="rows"):
        c.receive_rows(np.array([1]), np.array([9.0]), np.zeros((1, 3)))
