"""The token and cost ledger of one run of a teacher or judge, and its progress bar.

Counts only (no per-item state), so it stays the same size for ten or a hundred thousand questions.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any


class Ledger:
    """Requests, cache hits, retries, failures, tokens, cost and latency of one run."""

    def __init__(self, price_input_per_m: float | None = None, price_output_per_m: float | None = None):
        self.prices = (price_input_per_m, price_output_per_m)
        self.counts: Counter[str] = Counter()
        self.latency_s = 0.0
        self.started = time.perf_counter()
        self._bar: Any = None
        self._lock = threading.Lock()  # the client's loop thread and the caller both count

    def start_progress(self, desc: str, total: int | None = None) -> None:
        """Progress (rate, time left, failures): a bar on a terminal, lines in a log (runs.Progress)."""
        from rscaffold.runs import Progress

        self._bar = Progress(desc, total)

    def request(self, usage: dict[str, Any] | None, latency_s: float) -> None:
        """One answered request (not from the cache)."""
        with self._lock:
            self._request(usage, latency_s)

    def _request(self, usage: dict[str, Any] | None, latency_s: float) -> None:
        self.counts["requests"] += 1
        self.latency_s += latency_s
        usage = usage or {}
        self.counts["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
        self.counts["completion_tokens"] += int(usage.get("completion_tokens") or 0)
        details = usage.get("completion_tokens_details") or {}
        self.counts["reasoning_tokens"] += int(details.get("reasoning_tokens") or 0)

    def item(self, outcome: str) -> None:
        """One finished item: ``answered``, ``cached`` or ``failed``."""
        with self._lock:
            self.counts[outcome] += 1
            if self._bar is not None:
                self._bar.update(1, failed=self.counts["failed"], cached=self.counts["cached"])

    def cost(self) -> float | None:
        """Dollars spent on the requests of this run, when prices are configured."""
        pin, pout = self.prices
        if pin is None and pout is None:
            return None
        return (self.counts["prompt_tokens"] * (pin or 0) + self.counts["completion_tokens"] * (pout or 0)) / 1e6

    def summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        n = self.counts["requests"]
        out: dict[str, Any] = dict(self.counts)
        out.update(
            seconds=round(seconds, 2),
            requests_per_s=round(n / seconds, 2) if seconds > 0 else None,
            mean_latency_s=round(self.latency_s / n, 3) if n else None,
        )
        cost = self.cost()
        if cost is not None:
            out["cost_usd"] = round(cost, 4)
        return out

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
