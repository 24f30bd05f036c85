"""Texts for NATS errors: every error nats-py raises must become a message, never a second exception."""

from __future__ import annotations

from nats.js.errors import APIError, KeyDeletedError, KeyNotFoundError, NotFoundError

from sqlite_ha.replication.jetstream.common import describe


def test_errors_raised_without_apierror_init_are_described() -> None:
    # nats-py raises these without calling APIError.__init__: no ``description`` attribute. Describing one
    # used to raise AttributeError, which killed a node's join while it claimed its rowid slot.
    for error in (KeyNotFoundError(), KeyDeletedError()):
        assert describe(error) == type(error).__name__


def test_api_errors_say_what_jetstream_said() -> None:
    error = NotFoundError(code=404, err_code=10037, description="no message found")
    assert describe(error) == "no message found (JetStream error 10037)"
    assert isinstance(error, APIError)
