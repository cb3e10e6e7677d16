# Starts what runs at idle on the board's peripherals: the screen and
# keypad (ui) and card polling (tap). Called by app._run. The code scanner
# is polled only while a sale waits for payment (firmware.sale): a stray
# scan at idle does nothing, and its driver costs no heap until then.
import asyncio


def start(board):
    from firmware import ui
    ui.start(board)
    if board.reader is not None:
        from firmware import tap
        asyncio.create_task(tap.run(board))
