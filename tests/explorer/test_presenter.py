"""Presenter mode: wrong tokens are rate-limited per client (a fake clock), never for a client that has not failed."""

from __future__ import annotations

import logging

import pytest

from explorer import presenter

TOKEN = "lectern-7f3a"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def guard(monkeypatch):
    monkeypatch.setenv(presenter.ENV_VARIABLE, TOKEN)
    clock = Clock()
    return presenter.Guard(max_failures=3, window=60, lockout=300, clock=clock), clock


def test_a_few_wrong_tokens_lock_that_client_only(guard, caplog):
    guard, clock = guard
    caplog.set_level(logging.DEBUG)
    for guess in ("a", "b"):
        with pytest.raises(PermissionError, match="presenter mode"):
            guard.check(guess, "10.0.0.1")
    with pytest.raises(PermissionError, match="too many wrong presenter tokens"):
        guard.check("c", "10.0.0.1")  # the third within a minute: locked
    with pytest.raises(PermissionError, match=r"locked for it for 300 s"):
        guard.check(TOKEN, "10.0.0.1")  # even the right token, for a while
    guard.check(TOKEN, "10.0.0.2")  # a client that has not failed is never slowed down
    clock.now += 301
    guard.check(TOKEN, "10.0.0.1")  # the lock ends
    assert TOKEN not in caplog.text and "10.0.0.1" in caplog.text  # who, never the token


def test_failures_expire_and_a_right_token_clears_them(guard):
    guard, clock = guard
    for _ in range(2):
        with pytest.raises(PermissionError, match="presenter mode"):
            guard.check("x", "c")
    clock.now += 61  # older than the window: forgotten
    with pytest.raises(PermissionError, match="presenter mode"):
        guard.check("x", "c")
    guard.check(TOKEN, "c")  # right: the client's slate is clean
    for _ in range(2):
        with pytest.raises(PermissionError, match="presenter mode"):
            guard.check("x", "c")


def test_no_token_configured_and_direct_calls(monkeypatch):
    monkeypatch.delenv(presenter.ENV_VARIABLE, raising=False)
    guard = presenter.Guard(max_failures=1)
    for _ in range(3):
        guard.check("anything", "c")  # no presenter mode: everyone has control
    monkeypatch.setenv(presenter.ENV_VARIABLE, TOKEN)
    for _ in range(3):  # no client (a call from Python, not the network): refused, never locked
        with pytest.raises(PermissionError, match="presenter mode"):
            guard.check("x", None)
    guard.check(TOKEN, None)
    with guard.serving("10.1.1.1"):  # the module-level check applies the guard of the current web call
        with pytest.raises(PermissionError, match="too many"):
            presenter.check("x")
        with pytest.raises(PermissionError, match="too many"):
            presenter.check(TOKEN)
    presenter.check(TOKEN)  # outside a web call: no rate limit
