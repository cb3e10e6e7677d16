# main.py: starts the RoamPOS application (console, UI, transactions).
# Ctrl-C on the console stops it and leaves the REPL for mpremote.
from firmware import app

app.main()
