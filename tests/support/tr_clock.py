"""A clock a test moves by hand, so that leases, claims and back-offs are tested without
sleeping. Pass it where the code under test takes ``clock=``; read the time by calling it."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
