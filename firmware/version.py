# Firmware version, reported by `status` and in sign-on messages.
VERSION = "0.1.0"
