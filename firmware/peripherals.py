# Starts what runs at idle on the board's peripherals: the screen and
# keypad (ui) and card polling. Called by app._run. The code scanner
# is polled only while a sale waits for payment (firmware.sale): a stray
# scan at idle does nothing, and its driver costs no heap until then.
# Idle card polling needs only the reader's small idle part (a REQA a few
# times a second); the card read (firmware.tap, the full driver, EMV) is
# imported when a card answers and dropped again after the read.
import asyncio

POLL_MS = 150


def start(board):
    from firmware import ui
    ui.start(board)
    if board.reader is not None:
        asyncio.create_task(_poll_cards(board.reader))


async def _poll_cards(rd):
    try:
        rd.init()
    except Exception as e:  # no reader wired: the rest of the terminal works
        from firmware import console
        console.event({"reader": "absent", "error": str(e)})
        return
    while True:
        await asyncio.sleep_ms(POLL_MS)
        try:
            atqa = rd.poll()
            if atqa is not None:
                from firmware import tap
                try:
                    tap.read_once(rd.driver(), atqa)
                finally:
                    tap.unload()
        except Exception as e:  # out of memory, a reader fault: this tap is lost, not the reader
            from firmware import console
            console.failed("reader", e)
            await asyncio.sleep_ms(POLL_MS * 10)
