# vhw: the vterm's hardware, offered to firmware/boards/vterm.py the way a port
# offers `machine`. Device models live in this package; the reset line goes
# to the vterm process through its control FIFO.
CTRL = None  # the vterm's control FIFO, opened by the launcher


def reset():
    # Ask the vterm to pull the reset line: it kills and restarts this process
    # on the same flash image. Without a vterm (plain unix port) just exit.
    if CTRL is not None:
        CTRL.write(b"reset\n")
        import time

        time.sleep(5)  # the vterm ends us meanwhile
    raise SystemExit(0)
