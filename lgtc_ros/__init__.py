"""lgtc_ros: decentralized multi-drone resource allocation with LGTC-IPPO, from training to Crazyflies."""
__version__ = "0.1.0"
