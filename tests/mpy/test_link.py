# The link manager's loop, inside MicroPython: whatever one round raises (a
# MemoryError in a small heap, a driver bug), the loop reports it and goes on;
# the link is not lost for good. Found at 64K: a MemoryError outside the
# per-step handlers ended the task, and later `sim link` changed nothing.
import asyncio

from firmware import link, state


def test_link_loop_outlives_errors_and_keeps_trying():
    faults = [MemoryError("memory allocation failed"), RuntimeError("driver bug")]
    tried = []

    async def flaky_up(kind):
        tried.append(kind)
        if faults:
            raise faults.pop(0)
        return False          # no link: the loop backs off and tries again

    link._up = flaky_up
    link.BACKOFF_MS = (5,)
    link._cfg["order"] = ["cell"]
    link._kick = asyncio.Event()
    details = []

    async def main():
        task = asyncio.create_task(link._run())
        for _ in range(40):
            await asyncio.sleep_ms(5)
            details.append(link.info["detail"])
        alive = not task.done()
        task.cancel()
        return alive

    assert asyncio.run(main()), "the link task ended"
    assert "MemoryError: memory allocation failed" in details, details
    assert "RuntimeError: driver bug" in details, details
    assert len(tried) >= 4, tried       # both failures, then the rounds went on
    assert state.link == "offline"
