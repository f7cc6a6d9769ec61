"""The retry schedule: exponential backoff with jitter, capped, and a maximum number of attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed delivery is retried, and when it is given up.

    - ``base_s``: delay (seconds) after the first failed attempt.
    - ``factor``: growth per further attempt: attempt *n* waits ``base_s * factor ** (n - 1)``.
    - ``cap_s``: the longest delay.
    - ``jitter``: ± fraction applied at random so retries of many entries do not arrive together.
    - ``max_attempts``: deliveries (the first one included) before the entry goes to the dead-letter stream.

    The defaults retry 8 times over about 4 minutes: 1, 2, 4, 8, 16, 32, 64 seconds (± 20 %).
    """

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    jitter: float = 0.2
    max_attempts: int = 8

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.factor < 1 or self.cap_s < self.base_s or not 0 <= self.jitter < 1:
            raise ValueError(f"inconsistent retry policy: {self!r}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay_s(self, attempts: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed delivery (1-based)."""
        raw = min(self.cap_s, self.base_s * self.factor ** max(0, attempts - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return raw * (1 + spread)

    def exhausted(self, attempts: int) -> bool:
        """True when ``attempts`` deliveries have been made and no further one is allowed."""
        return attempts >= self.max_attempts
