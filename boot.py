# boot.py: runs first at power-on, on a board and on the vterm alike.
# Picks the board module for this port; main.py starts the application.
from firmware import boards

boards.select()
