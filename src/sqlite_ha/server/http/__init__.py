"""The HTTP API, compatible with the ``ha`` command of the seeds."""
