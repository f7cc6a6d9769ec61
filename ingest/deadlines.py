"""One timer for many body reads: a read still running ``timeout_s`` seconds after it began has its task cancelled.

Every read has the same timeout, so deadlines fall due in the order reads begin: a FIFO of tickets and a single loop
timer set for the oldest one replace ``asyncio.timeout``'s per-read timer (about 3 µs per webhook with uvloop; a
ticket costs a fraction of that). The timer fires at each oldest live deadline exactly, as ``asyncio.timeout`` would.

    ticket = deadlines.begin()
    try:
        body = await read(...)
    except asyncio.CancelledError:
        if deadlines.expired(ticket):  # our cancellation, not the caller's: the read timed out
            ...answer 408...
        raise
    finally:
        deadlines.end(ticket)
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Deadlines", "Ticket"]

_RUNNING, _ENDED, _EXPIRED = 0, 1, 2


class Ticket:
    """One read's deadline (the loop's clock, seconds), its task, and whether it ended or expired."""

    __slots__ = ("cancelling", "deadline", "state", "task")

    def __init__(self, deadline: float, task: asyncio.Task[object], cancelling: int) -> None:
        self.deadline = deadline
        self.task = task
        self.cancelling = cancelling  # the task's cancel requests before this read, as asyncio.timeout keeps them
        self.state = _RUNNING


class Deadlines:
    """Deadlines ``timeout_s`` seconds after :meth:`begin` for reads in tasks of one event loop."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._tickets: deque[Ticket] = deque()
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def begin(self) -> Ticket:
        """A ticket for a read starting now in the current task (call from inside a task)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadlines.begin() needs a running task")
        if loop is not self._loop:  # first use, or a new loop (tests): tickets of another loop are void
            self._loop, self._tickets, self._running, self._timer = loop, deque(), 0, None
        ticket = Ticket(loop.time() + self.timeout_s, task, task.cancelling())
        self._tickets.append(ticket)
        self._running += 1
        if self._timer is None:
            self._timer = loop.call_at(ticket.deadline, self._expire)
        return ticket

    def end(self, ticket: Ticket) -> None:
        """The read is over (whatever its outcome); forget its deadline."""
        if ticket.state != _RUNNING:
            return
        ticket.state = _ENDED
        self._running -= 1
        tickets = self._tickets
        while tickets and tickets[0].state != _RUNNING:
            tickets.popleft()
        # Reads mostly end in the order they began; one slow read at the head must not make the queue hold every
        # read that began after it, so ended tickets are swept out once they are the majority.
        if len(tickets) > 64 and len(tickets) > 2 * self._running:
            self._tickets = deque(t for t in tickets if t.state == _RUNNING)

    def expired(self, ticket: Ticket) -> bool:
        """Whether the CancelledError the read raised is this deadline's doing (and only its): the task's cancel
        request is then withdrawn, and the caller answers the timeout instead of re-raising."""
        return ticket.state == _EXPIRED and ticket.task.uncancel() <= ticket.cancelling

    def _expire(self) -> None:
        self._timer = None
        tickets = self._tickets
        if not tickets:
            return
        loop = tickets[0].task.get_loop()
        now = loop.time()
        while tickets and (tickets[0].state != _RUNNING or tickets[0].deadline <= now):
            ticket = tickets.popleft()
            if ticket.state == _RUNNING:
                ticket.state = _EXPIRED
                self._running -= 1
                ticket.task.cancel()
        if tickets:
            self._timer = loop.call_at(tickets[0].deadline, self._expire)
