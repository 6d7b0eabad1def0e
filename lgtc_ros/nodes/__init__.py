"""Thin rclpy adapters (ROS 2 Jazzy): each node declares its parameters, converts messages and
calls the ROS-free code that makes every decision (tested without ROS):

===============  =====================================  ========================================
node             wraps                                  topics (``{name}`` = cf1, cf2, ...)
===============  =====================================  ========================================
agent_node       runtime.onboard.OnboardController      in  /{name}/pose, /lgtc/demands,
                 (one process per drone)                    /{name}/lgtc/supply, /{name}/lgtc/inbox
                                                        out /{name}/lgtc/message, /{name}/lgtc/state,
                                                            /{name}/cmd_vel_nominal
radio_node       runtime.radio.Radio                    in  /{name}/lgtc/message, poses, supplies
                                                        out /{name}/lgtc/inbox (within C only)
cbf_node         safety.swarm.SwarmFilter               in  /{name}/cmd_vel_nominal, poses, supplies
                                                        out /{name}/cmd_vel_safe
world_node       runtime.plant.MissionPlant             in  /{name}/cmd_vel_safe (sim) or
                                                            /{name}/pose (hardware)
                                                        out /{name}/pose (sim), /lgtc/demands,
                                                            /{name}/lgtc/supply, /lgtc/reward_terms
bridge_node      flight.DroneFlight (+ Crazyswarm2)     in  /{name}/cmd_vel_safe, /{name}/pose,
                                                            /{name}/lgtc/supply
                                                        out /{name}/cmd_full_state and the
                                                            takeoff / land / notify_setpoints_stop
                                                            services of Crazyswarm2
===============  =====================================  ========================================

Importing these modules needs a sourced ROS 2 (rclpy); nothing else in the package does.
"""
