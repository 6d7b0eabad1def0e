"""Thin rclpy adapters (ROS 2 Jazzy): each node declares its parameters, converts messages and
calls the ROS-free code that makes every decision (tested without ROS). Topic names are relative
(``{name}`` = cf1, cf2, ...; a per-drone node runs in its drone's namespace); the README's topic
table gives types and QoS.

===============  =====================================  ========================================
node             wraps                                  topics
===============  =====================================  ========================================
agent_node       runtime.onboard.OnboardController      in  {name}/pose, lgtc/demands, lgtc/meta,
(one per drone;  (nodes.drone_topics)                       {name}/lgtc/supply, {name}/lgtc/inbox
swarm_node: N)                                          out {name}/lgtc/message, {name}/lgtc/state,
                                                            {name}/cmd_vel_nominal
radio_node       runtime.radio.Radio                    in  {name}/lgtc/message
                                                        out {name}/lgtc/inbox (within C only)
cbf_node         safety.swarm.SwarmFilter               in  {name}/cmd_vel_nominal, {name}/pose,
                                                            {name}/lgtc/supply
                                                        out {name}/cmd_vel_safe, lgtc/cbf
world_node       runtime.plant.MissionPlant             in  {name}/cmd_vel_safe (sim) or
                                                            {name}/pose (hardware), lgtc/airborne
                                                        out {name}/pose (sim), lgtc/demands,
                                                            {name}/lgtc/supply, lgtc/reward_terms,
                                                            lgtc/meta, lgtc/markers (opt-in)
bridge_node      flight.DroneFlight (+ Crazyswarm2      in  {name}/cmd_vel_safe, {name}/pose,
                 or cflib_link)                             {name}/lgtc/supply
                                                        out {name}/cmd_full_state, the takeoff /
                                                            land / notify_setpoints_stop services
                                                            of Crazyswarm2, {name}/pose (from TF or
                                                            the cflib state-estimate log),
                                                            lgtc/airborne
===============  =====================================  ========================================

Importing these modules needs rclpy (a sourced ROS 2 or the pip wheels); nothing else in the
package does. `probe` watches a running graph for tests and benchmarks.
"""
