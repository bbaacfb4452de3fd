"""Stop a run cleanly on SIGINT (Ctrl-C) or SIGTERM (what a cluster sends on preemption).

While :class:`StopRequest` is active, either signal only sets a flag: the training loop looks at
it at its safe points (after an optimizer step and its batch counter, after an evaluation and
the end-of-epoch checkpoint), writes the checkpoint there and raises :class:`Interrupted`. No
step is ever half-counted, so resuming repeats the uninterrupted run exactly. A second signal
while stopping only repeats the message (``kill -9`` stops at once; the last checkpoint on disk
is still consistent, since every write is atomic).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(RuntimeError):
    """The run was stopped by a signal at a safe point; a checkpoint was written and the run can
    be resumed. ``signum`` is the signal (the command line exits with ``128 + signum``)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopRequest:
    """A context in which SIGINT and SIGTERM request a stop instead of killing the process.

    Handlers are installed only in the main thread (Python delivers signals there); elsewhere the
    context does nothing and :attr:`signum` stays ``None``. Previous handlers are restored on exit.

    Args:
        quiet: do not print when a signal arrives (default: False; workers other than rank 0).
    """

    def __init__(self, quiet: bool = False):
        self.signum: int | None = None
        self.quiet = quiet
        self._previous: dict[int, object] = {}
        self._first_at = 0.0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int) -> None:
        """What a signal does; callable directly (tests, a launcher forwarding a signal)."""
        first = self.signum is None
        if first:
            self.signum, self._first_at = int(signum), time.monotonic()
        elif time.monotonic() - self._first_at < 1.0:
            return  # the same stop delivered twice (a terminal's Ctrl-C and a launcher's copy)
        if not self.quiet:
            what = signal_name(signum)
            msg = (f"\n{what}: stopping at the next safe point and writing a checkpoint "
                   "(the run will be resumable)" if first else
                   f"\n{what}: already stopping; waiting for the checkpoint (kill -9 stops at once)")
            print(msg, file=sys.stderr, flush=True)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.request(signum)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
