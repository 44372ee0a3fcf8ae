"""What the tooling starts and stops (a test network, a relay, a central host), used as
context managers."""

from __future__ import annotations

from typing import Self


class StartStop:
    """Started on entering a `with` block, stopped on leaving it. A `start()` that fails
    half-way is undone by `stop()`, so `stop()` must cope with a partial start."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
