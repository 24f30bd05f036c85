"""The NATS JetStream driver: the only code that imports nats-py."""
