"""The virtual terminal: the MicroPython unix port behaving like a devboard."""
