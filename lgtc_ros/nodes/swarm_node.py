"""N drones' decision loops in one process, for large simulated swarms (`sim.launch.py
agents:=swarm`): one process per drone costs ~280 MB of resident memory each (torch), so 50
drones cannot run as 50 agent_nodes on a small machine.

Each drone keeps its own inbox, recurrent state, policy copy and topics (`nodes.drone_topics`,
prefix `cf1/` in the swarm's namespace); only the timer, the demand broadcast and the process
are shared. The decisions are the agent node's, drone by drone. Parameters: scenario, names,
model, any_consumers, max_message_age_s.
"""
from __future__ import annotations

from rclpy.node import Node

from lgtc_ros.nodes.common import guarded, mission, now_s, run
from lgtc_ros.nodes.drone_topics import DroneTopics, MissionInputs, declare_policy, load_controllers
from lgtc_ros.policy.certificate import describe_model


class SwarmNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("lgtc_swarm", **kwargs)
        scenario, names = mission(self)
        model, any_consumers, max_age = declare_policy(self)
        controllers = load_controllers(scenario, list(range(len(names))), model, any_consumers, max_age)
        self.drones = [DroneTopics(self, c, f"{name}/") for c, name in zip(controllers, names)]
        self.inputs = MissionInputs(self, self.drones, "lgtc/demands", "lgtc/meta", scenario, max_age)
        self.create_timer(scenario.dt, guarded(self, self._tick))
        self.get_logger().info(f"{len(names)} drones, {model or 'shipped model'} at {1 / scenario.dt:.0f} Hz; "
                               f"{describe_model(model, scenario, any_consumers)}")

    def _tick(self) -> None:
        now = now_s(self)
        for drone in self.drones:
            drone.tick(now)


def main(args=None) -> None:
    run(SwarmNode, "lgtc_swarm", args)


if __name__ == "__main__":
    main()
