"""A worker's own CPU per authorization: `Worker.process_batch` in-process on prebuilt requests.

    python -m roampos.bench.host_cpu [--terminals 200] [--requests 40] [--rounds 3] [--group 40]

No broker and no load generator: the figure moves only with the worker's code and the ledger's
work (SQLite, in a temporary directory), which the end-to-end load test mixes with the load
generator's and the broker's CPU and with whatever else the machine runs. CPU time of the whole
process (the WAL sync thread included), per round; the rounds run on a ledger that grows, as the
load test's do. For an instruction count that repeats to 0.05 % between runs, run it under
`valgrind --tool=callgrind --toggle-collect='*Worker*process_batch*'` (docs/host.md).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["run", "rows", "main"]


class _Outbox:
    """What process_batch needs of the MQTT client; it keeps the answers for the caller to check."""
    conn = 1

    def __init__(self) -> None:
        self.responses: List[bytes] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.responses.append(payload)

    def ack(self, msg) -> None:  # type: ignore[no-untyped-def]
        pass

    def flush(self) -> None:
        pass


def run(terminals: int = 200, requests: int = 40, rounds: int = 3, group: int = 40) -> Dict[str, Any]:
    """CPU us per authorization of each round, the answers' response codes and the ledger's rows."""
    from .. import iso
    from ..host import db as dbm
    from ..host.handler import Handler
    from ..host.service import Worker
    from ..host.wire import Inbound
    from .host_load import _plans, bench_terminal
    tmp = tempfile.mkdtemp(prefix="roampos-cpu-")
    try:
        url = f"sqlite:///{tmp}/ledger.db"
        db = dbm.connect(url)
        sims = [bench_terminal(db, i) for i in range(terminals)]
        signon = Handler(db)
        for s in sims:
            s.apply_signon(signon.handle(s.tid, s.signon()).response)
        worker = Worker("mqtt://127.0.0.1:1", url)   # never connects: process_batch needs no broker
        out = worker.client = _Outbox()
        per_round: List[float] = []
        for r in range(rounds):
            plans = _plans(sims, requests, r)
            # Terminal by terminal, as requests arrive from many terminals at once.
            msgs = [Inbound(f"roampos/v1/{s.tid}/req", plans[s.tid][j], 1, k + 1, 1)
                    for k, (j, s) in enumerate((j, s) for j in range(requests) for s in sims)]
            t0 = time.process_time()
            for i in range(0, len(msgs), group):
                worker.process_batch(msgs[i:i + group], wait_sync=False)
            worker.answer_synced(wait=30, every=True)
            per_round.append((time.process_time() - t0) / len(msgs) * 1e6)
        codes: Dict[str, int] = {}
        for raw in out.responses:
            rc = iso.decode(raw).get("39", "??")
            codes[rc] = codes.get(rc, 0) + 1
        (stored,) = db.one("SELECT COUNT(*) FROM txns")
        worker.db.close()
        db.close()
        return {"us_per_auth": per_round, "codes": codes, "rows": int(stored),
                "authorizations": terminals * requests * rounds}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m roampos.bench.host_cpu", description=__doc__.split("\n")[0])
    p.add_argument("--terminals", type=int, default=200, help="terminals, each sending --requests a round")
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3, help="rounds on the same (growing) ledger")
    p.add_argument("--group", type=int, default=40, help="messages per worker group (the load test's mean is ~38)")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    a = _args(argv)
    r = run(a.terminals, a.requests, a.rounds, a.group)
    print("round  CPU us per authorization")
    for i, us in enumerate(r["us_per_auth"]):
        print(f"{i + 1:5d}  {us:.1f}")
    print(f"answers {r['codes']}, ledger rows {r['rows']} of {r['authorizations']}")
    return r


def rows(argv: Optional[List[str]] = None) -> List[Tuple[str, str, str]]:
    """For `python -m roampos.bench`: the median round."""
    a = _args(argv or [])
    per_round = run(**vars(a))["us_per_auth"]
    return [(f"worker CPU per authorization, in-process, {a.terminals} terminals (median of {a.rounds} rounds)",
             f"{statistics.median(per_round):.1f} us", "")]


if __name__ == "__main__":
    main()
