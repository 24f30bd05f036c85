"""Network front ends of a node."""
