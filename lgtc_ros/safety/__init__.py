"""Safety layer: control-barrier-function filters that turn nominal drone velocities into the closest
collision-free, arena-respecting, speed-bounded ones (see `lgtc_ros.safety.cbf`)."""
from lgtc_ros.safety.cbf import (
    CBFStats,
    CentralizedCBF,
    DecentralizedCBF,
    bench_cbf,
    cbf_qp_cvxpy,
    make_centralized_filter,
    make_decentralized_filter,
    speed_polygon,
)
from lgtc_ros.safety.swarm import CBF_MARGIN, SwarmFilter

__all__ = [
    "CBF_MARGIN",
    "SwarmFilter",
    "CBFStats",
    "CentralizedCBF",
    "DecentralizedCBF",
    "bench_cbf",
    "cbf_qp_cvxpy",
    "make_centralized_filter",
    "make_decentralized_filter",
    "speed_polygon",
]
