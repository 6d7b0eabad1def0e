"""The PettingZoo ParallelEnv view passes the official API test."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from lgtc_ros.scenario import load_scenario, resolve_scenario
from lgtc_ros.world.pettingzoo import LgtcParallelEnv


@pytest.mark.parametrize("name, cycles", [("paper_10x4", 400), ("discharge_5x3", 1100)])
def test_parallel_api(name, cycles):
    parallel_api_test(LgtcParallelEnv(load_scenario(resolve_scenario(name))), num_cycles=cycles)


def test_landed_agent_is_terminated():
    s = load_scenario(resolve_scenario("discharge_5x3"))
    s = dataclasses.replace(s, events=(dataclasses.replace(s.events[0], select=None, agent=4),))
    env = LgtcParallelEnv(s)
    env.reset(seed=0)
    for _ in range(1001):  # the event fires at the start of step 1000 (t = 50 s)
        obs, rew, term, trunc, info = env.step({a: np.zeros(2, np.float32) for a in env.agents})
    assert term["agent_4"] and "agent_4" not in env.agents and len(env.agents) == 4
    assert set(info["agent_0"]) >= {"assignment", "collision", "demand_reduction"}
