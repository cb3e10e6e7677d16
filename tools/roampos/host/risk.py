"""Risk rules: card velocity, same card in two regions too fast, amounts just under reporting lines."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .db import Database

__all__ = ["Policy", "check"]


@dataclass(frozen=True)
class Policy:
    """Tunable thresholds; read from the environment so every worker agrees without a config file."""
    max_skew_s: int = 600            # field 7 further than this from host time = replay (94)
    velocity_count: int = 5          # approvals of one card within velocity_window_s before a 59
    velocity_window_s: int = 60
    travel_window_s: int = 3600      # same card approved in another region within this = 59
    near_threshold_pct: int = 10     # flag amounts within this % under the reporting threshold

    @classmethod
    def from_env(cls) -> "Policy":
        def get(name: str, default: int) -> int:
            return int(os.environ.get("ROAMPOS_" + name.upper(), default))
        return cls(*(get(f, getattr(cls, f)) for f in cls.__dataclass_fields__))


def check(db: Database, policy: Policy, card_hash: str, region: str, amount: int,
          report_threshold: int, now: float,
          recent: Optional[List[Tuple[int, str, str]]] = None) -> Tuple[Optional[str], List[str]]:
    """Return (decline code or None, flags). Only approved, still-standing sales count.

    `recent`: the card's approved financial rows (created, proc, region) from at least both windows
    back, when the caller already read them (a worker group); else one query here."""
    flags: List[str] = []
    rc: Optional[str] = None
    since_v = int(now) - policy.velocity_window_s
    since_t = int(now) - policy.travel_window_s
    if recent is not None:
        # One pass, no generators: the list is usually empty or short.
        n, other = 0, False
        for created, proc, reg in recent:
            if created >= since_v and proc.startswith("00"):
                n += 1
            if created >= since_t and reg != region:
                other = True
    else:
        # Both rules in one read of the card's recent approvals (index card_hash, created).
        n, other = db.one("SELECT COALESCE(SUM(CASE WHEN created>=? AND proc LIKE '00%' THEN 1 ELSE 0 END), 0),"
                          " MAX(CASE WHEN created>=? AND region<>? THEN region END) FROM txns"
                          " WHERE card_hash=? AND created>=? AND status='approved' AND kind='financial'",
                          (since_v, since_t, region, card_hash, min(since_v, since_t)))
    if n >= policy.velocity_count:
        flags.append("velocity")
        rc = "59"
    if other:
        flags.append("impossible_travel")
        rc = rc or "59"
    low = report_threshold - report_threshold * policy.near_threshold_pct // 100
    if low <= amount < report_threshold:
        flags.append("near_threshold")  # flag only: structuring is reported, not declined
    return rc, flags
