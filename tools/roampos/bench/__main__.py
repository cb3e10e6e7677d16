"""`make bench`: run every benchmark section and print one table.

Figures are medians from one run on a shared machine: compare them as
ratios, not as absolute numbers.
"""
import importlib
import sys
import time
import traceback
from typing import List, Tuple

Row = Tuple[str, str, str]

# module -> function returning rows; sections that are not there yet are skipped.
SECTIONS = [
    ("foundation", "roampos.bench.foundation", "rows"),
    ("drivers", "roampos.bench.drivers", "rows"),
    ("parameters", "roampos.bench.params", "rows"),
    ("host", "roampos.bench.host_cpu", "rows"),
    ("host", "roampos.bench.host_load", "rows"),
]


def table(rows: List[Tuple[str, str, str, str]]) -> str:
    head = ("section", "metric", "value", "target")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [" | ".join(h.ljust(w) for h, w in zip(head, widths)), line]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    only = set(argv if argv is not None else sys.argv[1:])
    rows = []
    failed = 0
    for name, module, fn in SECTIONS:
        if only and name not in only:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        t0 = time.monotonic()
        print("bench: %s ..." % name, file=sys.stderr, flush=True)
        try:
            for metric, value, target in getattr(mod, fn)():
                rows.append((name, metric, value, target))
        except Exception:
            traceback.print_exc()
            rows.append((name, "FAILED", "see traceback above", ""))
            failed += 1
        print("bench: %s done in %.1fs" % (name, time.monotonic() - t0), file=sys.stderr, flush=True)
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
