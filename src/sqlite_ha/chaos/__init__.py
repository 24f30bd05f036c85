"""A Jepsen-style chaos suite: real node processes, concurrent clients, faults, and a checker.

``python -m sqlite_ha.chaos`` runs the matrix (every nemesis in both topologies) and prints a table;
``tests/chaos/`` runs a short subset with the tests. See docs/operations.md, "Chaos testing".
"""

from sqlite_ha.chaos.cluster import Topology
from sqlite_ha.chaos.nemesis import NEMESES
from sqlite_ha.chaos.result import Result, table
from sqlite_ha.chaos.runner import Settings, run

__all__ = ["NEMESES", "Result", "Settings", "Topology", "run", "table"]
