"""The Stellar network simulator: Horizon, Stellar Expert, stellar.toml and Hubble exports over
one HTTP port, with ground truth for tests. Local tooling: never imported by functions/ or common/.

    from local.simulator import Simulator
    with Simulator(accounts=5000, seed=7, port=0) as sim:
        sim.base_url, sim.env(), sim.truth("public", address)
"""
from local.simulator.network import Network, NetworkConfig
from local.simulator.server import Simulator

__all__ = ["Network", "NetworkConfig", "Simulator"]
