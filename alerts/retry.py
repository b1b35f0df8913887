"""When to try a failed delivery again: one policy object, shared by every channel.

Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
Jitter", 2015): the n-th retry waits a uniform random time in [0, min(cap, base·2ⁿ)], which
spreads retries of many notifications instead of synchronising them. A ``Retry-After``
from the far end wins when it asks for longer. After ``give_up_after`` seconds since the
first attempt the notification is abandoned, and that failure is itself alerted.

>>> policy = RetryPolicy(base=1.0, cap=60.0, give_up_after=3600.0, jitter=False)
>>> [policy.delay(n) for n in range(1, 5)], policy.delay(2, retry_after=30.0)
([2.0, 4.0, 8.0, 16.0], 30.0)
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 1.0
    cap: float = 300.0
    give_up_after: float = 24 * 3600.0
    jitter: bool = True

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` ≥ 1 have failed)."""
        ceiling = min(self.cap, self.base * 2.0**attempt)
        wait = random.uniform(0.0, ceiling) if self.jitter else ceiling
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait

    def exhausted(self, first_attempt_s: float, now_s: float) -> bool:
        return now_s - first_attempt_s >= self.give_up_after
