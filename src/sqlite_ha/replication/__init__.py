"""Replication: the change-set format, the Replicator boundary and its drivers.

Only ``jetstream`` imports nats.
"""
