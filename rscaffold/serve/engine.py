"""Continuous batching across requests: one thread decodes every request a hosted student has.

Requests wait in one bounded first-in-first-out queue and join the running batch between tokens, as
questions join a batch in ``rscaffold decode`` (the same :class:`~rscaffold.decode.Decoder` and
:class:`~rscaffold.kvbatch.Batch`). Requests that ask for different settings (signal source, tau,
max_tokens, temperature, top_p) decode in their own lane, a batch of their own, so each gets exactly
what it asked for; every lane moves one token per round. At most ``batch_size`` requests decode at
once over all lanes and at most ``max_queue`` wait; beyond that :meth:`Engine.submit` refuses
(:class:`Busy`), so memory stays bounded. A cancelled request (a client gone) leaves the batch before
the next token.

Greedy outputs equal those of decoding each request alone: rows in a batch never attend to each other
(see :mod:`rscaffold.kvbatch`).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from rscaffold.config import DecodeConfig
from rscaffold.decode import Decoder
from rscaffold.kvbatch import Batch, Row
from rscaffold.model import Student
from rscaffold.schema import Question, Step
from rscaffold.signal_sources import GoldenSignals, HeadPredictor, NoSignals, RandomSignals, SignalSource
from rscaffold.signals import Signal

log = logging.getLogger(__name__)

Event = dict[str, Any]
"""What a request hears from the engine: ``{"step": Step}`` as each step is written, then
``{"done": Decoded}`` or ``{"error": str}``."""


class Busy(Exception):
    """The queue is full: the request is refused (the server answers 503 with Retry-After)."""


@dataclass
class Ticket:
    """One submitted request: its question, its decode settings and where its events go."""

    question: Question
    cfg: DecodeConfig
    signals: list[Signal] | None
    on_event: Callable[[Event], None]
    steps: bool = True
    """Whether the request hears each step as it is written (a streamed reply), or only the end."""
    cancelled: bool = False
    finished: bool = False
    lane: Any = field(default=None, repr=False)

    def cancel(self) -> None:
        """Stop decoding this request (its row leaves the batch before the next token)."""
        self.cancelled = True


class _Lane:
    """The requests decoded with one set of settings: a decoder and its batch."""

    def __init__(self, decoder: Decoder, golden: dict[str, list[Signal | None]] | None):
        self.decoder, self.golden = decoder, golden
        self.batch: Batch | None = None
        self.tickets: dict[str, Ticket] = {}

    @property
    def rows(self) -> int:
        return len(self.batch.rows) if self.batch is not None else 0


class Engine:
    """Decodes the requests of one student in one background thread; see the module docstring."""

    def __init__(
        self,
        student: Student,
        cfg: DecodeConfig,
        batch_size: int = 16,
        max_queue: int = 256,
        random_source: RandomSignals | None = None,
        start: bool = True,
    ):
        """``start=False``: requests queue until :meth:`start` (tests fill the queue this way)."""
        self.student, self.cfg = student, cfg
        self.batch_size, self.max_queue = batch_size, max_queue
        self.random_source = random_source
        self.guided = student.follows_signals
        self.waiting: deque[Ticket] = deque()
        self.lanes: dict[str, _Lane] = {}
        self.cond = threading.Condition()
        self.ids = itertools.count()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="rscaffold-engine", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self.thread.start()

    # -- the request side (any thread) ------------------------------------------------------------

    def submit(
        self,
        text: str,
        cfg: DecodeConfig,
        on_event: Callable[[Event], None],
        signals: list[Signal] | None = None,
        steps: bool = True,
    ) -> Ticket:
        """Queue a question with its settings; ``on_event`` is called from the engine's thread (with each
        step too when ``steps``)."""
        ticket = Ticket(Question(id=f"request-{next(self.ids)}", text=text), cfg, signals, on_event, steps)
        with self.cond:
            if self.closed:
                raise Busy("the server is shutting down")
            decoding = sum(len(lane.tickets) for lane in self.lanes.values())
            if decoding + len(self.waiting) >= self.batch_size + self.max_queue:
                raise Busy(f"{decoding} requests decoding and {len(self.waiting)} waiting (serve.max_queue)")
            self.waiting.append(ticket)
            self.cond.notify()
        return ticket

    def load(self) -> dict[str, int]:
        """Requests decoding and waiting now."""
        with self.cond:
            return {"decoding": sum(len(lane.tickets) for lane in self.lanes.values()), "waiting": len(self.waiting)}

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    # -- the engine's thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        with torch.no_grad():  # grad mode is per thread: the decoder's own no_grad does not reach here
            self._rounds()

    def _rounds(self) -> None:
        while True:
            with self.cond:
                while not self.closed and not self.waiting and not any(lane.tickets for lane in self.lanes.values()):
                    self.cond.wait()
                if self.closed:
                    break
                joining = self._take()
            for lane, tickets in joining.items():
                self._guarded(lane, lambda lane=lane, tickets=tickets: self._join(lane, tickets))
            for lane in list(self.lanes.values()):
                if lane.tickets:
                    self._guarded(lane, lambda lane=lane: self._advance(lane))
        for lane in self.lanes.values():
            self._fail(lane, "the server is shutting down")
        for ticket in self.waiting:
            ticket.on_event({"error": "the server is shutting down"})

    def _take(self) -> dict[_Lane, list[Ticket]]:
        """Waiting requests that fit (first come, first served), by lane; called holding the lock."""
        free = self.batch_size - sum(len(lane.tickets) for lane in self.lanes.values())
        joining: dict[_Lane, list[Ticket]] = {}
        while free > 0 and self.waiting:
            ticket = self.waiting.popleft()
            if ticket.cancelled:
                continue
            lane = self._lane(ticket)
            lane.tickets[ticket.question.id] = ticket
            ticket.lane = lane
            joining.setdefault(lane, []).append(ticket)
            free -= 1
        return joining

    def _lane(self, ticket: Ticket) -> _Lane:
        key = ticket.cfg.model_dump_json()
        lane = self.lanes.get(key)
        if lane is None:
            source, golden = self._source(ticket.cfg)
            decoder = Decoder(self.student, source, ticket.cfg, on_step=self._on_step)
            lane = self.lanes[key] = _Lane(decoder, golden)
        if lane.golden is not None:
            lane.golden[ticket.question.id] = list(ticket.signals or [])
        return lane

    def _source(self, cfg: DecodeConfig) -> tuple[SignalSource, dict[str, list[Signal | None]] | None]:
        if not self.guided or cfg.signal_source == "none":
            return NoSignals(), None
        if cfg.signal_source == "golden":
            golden: dict[str, list[Signal | None]] = {}
            return GoldenSignals(golden), golden
        if cfg.signal_source == "random":
            assert self.random_source is not None, "checked when the request was read"
            return self.random_source, None
        return HeadPredictor(), None

    def _on_step(self, question: Question, step: Step) -> None:
        for lane in self.lanes.values():
            if (ticket := lane.tickets.get(question.id)) is not None:
                if ticket.steps:
                    ticket.on_event({"step": step})
                return

    def _join(self, lane: _Lane, tickets: list[Ticket]) -> None:
        rows = [lane.decoder.row(0, t.question) for t in tickets if not t.cancelled]
        if rows:
            lane.batch = lane.decoder.join(lane.batch, rows)

    def _advance(self, lane: _Lane) -> None:
        assert lane.batch is not None
        gone = [i for i, row in enumerate(lane.batch.rows) if lane.tickets[row.question.id].cancelled]
        if gone:
            keep = [i for i in range(len(lane.batch.rows)) if i not in gone]
            for i in gone:
                self._release(lane, lane.batch.rows[i])
            lane.batch.keep(keep)
        if not lane.batch.rows:
            self._drop_if_idle(lane)
            return
        for row in lane.decoder.advance(lane.batch):
            ticket = self._release(lane, row)
            ticket.finished = True
            ticket.on_event({"done": lane.decoder.output(row)})
        self._drop_if_idle(lane)

    def _drop_if_idle(self, lane: _Lane) -> None:
        """A lane with no request left goes (requests may ask for any number of settings)."""
        with self.cond:
            if not lane.tickets:
                lane.batch = None
                self.lanes = {k: v for k, v in self.lanes.items() if v is not lane}

    def _release(self, lane: _Lane, row: Row) -> Ticket:
        with self.cond:
            ticket = lane.tickets.pop(row.question.id)
        if lane.golden is not None:
            lane.golden.pop(row.question.id, None)
        if isinstance(lane.decoder.source, RandomSignals):
            lane.decoder.source.plan.pop(row.question.id, None)
        return ticket

    def _guarded(self, lane: _Lane, work: Callable[[], None]) -> None:
        """Run one round of a lane; an error fails that lane's requests, not the engine."""
        try:
            work()
        except Exception as e:
            log.exception("decoding failed")
            self._fail(lane, f"decoding failed: {type(e).__name__}: {e}")

    def _fail(self, lane: _Lane, message: str) -> None:
        with self.cond:
            tickets, lane.tickets, lane.batch = list(lane.tickets.values()), {}, None
            self.lanes = {k: v for k, v in self.lanes.items() if v is not lane}
        for ticket in tickets:
            ticket.on_event({"error": message})
