"""Live local read replicas of a cluster's databases (``sqlite-ha sync``, ``sqlite_ha.replica``)."""

from sqlite_ha.sync.options import ReplicaOptions, replica_options
from sqlite_ha.sync.replica import AsyncReplica, Lag, Replica, replica

__all__ = ["AsyncReplica", "Lag", "Replica", "ReplicaOptions", "replica", "replica_options"]
