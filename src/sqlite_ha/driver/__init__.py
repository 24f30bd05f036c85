"""The embedded driver: go-ha for Python. An application opens its SQLite database through a DSN and its
committed transactions replicate exactly as a ``sqlite-ha serve`` node's do (same change sets, stream and
subjects), so driver-embedded processes and server nodes can be one cluster. No server process: the node runs
inside the application, without HTTP or PostgreSQL listeners.
"""
