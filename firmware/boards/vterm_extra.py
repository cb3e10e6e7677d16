# The vterm board's parts built on first use (firmware/boards/vterm.py): the
# simulated-input hooks, the modem, the WLAN and the scanner. A module of its
# own so that the board module the terminal idles with stays small.
from vhw.bus import Pin


def build(board, name):
    if name == "sim":
        from vhw.sim import Sim
        return Sim(board)
    if name == "scanner":
        from vhw.uart import UART
        from drivers.gm65 import GM65
        return GM65(UART(2, 9600, model=board.sim.scanner))
    if name == "modem":
        from vhw.uart import UART
        from drivers.sim7600 import SIM7600
        return SIM7600(UART(1, 115200, model=board.sim.net.modem), Pin(21, Pin.OUT, value=1))
    if name == "wlan":
        return board.sim.net.wlan
    raise AttributeError(name)
