"""PettingZoo `ParallelEnv` view of ONE env of the batched simulator (interop with MARL libraries).

Agents are named `agent_0 .. agent_{N-1}`. Observation: the flat per-agent vector of
`Observation.flat()` (layout `flat_layout`), float32. Action: velocity (vx, vy) in arena units/s,
each component in [-v_max, v_max]; the norm is clipped to v_max by the simulator. An agent that
lands or drops out (events) is terminated; every agent is truncated at the episode's end.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from lgtc_ros.scenario import Scenario
from lgtc_ros.world.env import World
from lgtc_ros.world.observation import flat_layout


class LgtcParallelEnv(ParallelEnv):
    metadata = {"name": "lgtc_resource_allocation_v0", "render_modes": []}

    def __init__(self, scenario: Scenario, seed: int = 0):
        self.scenario = scenario
        self.possible_agents = [f"agent_{i}" for i in range(scenario.n_agents)]
        self.agents: list[str] = []
        self._seed = seed
        self._world: World | None = None
        self.render_mode = None

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent: str) -> spaces.Box:
        low, high = [], []
        for name, width in flat_layout(self.scenario.n_consumers, self.scenario.n_resources):
            signed = name in ("pos", "consumer_pos")
            low.append(np.full(width, -1.0 if signed else 0.0))
            high.append(np.full(width, 1.0 if signed or name == "kinds" else np.inf))
        return spaces.Box(np.concatenate(low).astype(np.float32), np.concatenate(high).astype(np.float32),
                          dtype=np.float32)

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent: str) -> spaces.Box:
        v = self.scenario.v_max
        return spaces.Box(-v, v, shape=(2,), dtype=np.float32)

    def reset(self, seed: int | None = None, options: dict | None = None):
        if self._world is None:
            self._world = World(self.scenario, n_envs=1, seed=self._seed if seed is None else seed)
        else:
            self._world.reset(seed=seed)
        self.agents = list(self.possible_agents)
        obs = self._world.observe().flat()[0].numpy()
        return {a: obs[i].copy() for i, a in enumerate(self.possible_agents)}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, np.ndarray]):
        if self._world is None or not self.agents:
            raise RuntimeError("step() called before reset() or after the episode ended")
        n = self.scenario.n_agents
        action = torch.zeros(1, n, 2)
        for name, act in actions.items():
            if name not in self.agents:
                raise KeyError(f"action for '{name}', which is not a live agent")
            action[0, self.possible_agents.index(name)] = torch.as_tensor(np.asarray(act, dtype=np.float32))
        out = self._world.step(action)
        obs = out.obs.flat()[0].numpy()
        active = out.obs.active[0].numpy()
        truncated = bool(out.done[0])
        live = list(self.agents)
        observations = {a: obs[self.possible_agents.index(a)].copy() for a in live}
        rewards = {a: float(out.reward[0, self.possible_agents.index(a)]) for a in live}
        terminations = {a: not bool(active[self.possible_agents.index(a)]) for a in live}
        truncations = {a: truncated for a in live}
        infos = {a: {k: float(v[0, self.possible_agents.index(a)]) for k, v in out.terms.items()} for a in live}
        self.agents = [a for a in live if not (terminations[a] or truncations[a])]
        return observations, rewards, terminations, truncations, infos

    def render(self):  # no render modes: plots come from `lgtc sim --out`
        return None

    def close(self):
        self._world = None
