# The console's command table: name -> (module, function, help). Modules are
# imported on first use, so rarely used commands cost no heap until then.
# A handler takes the argument string and returns a dict (the OK reply), None
# (OK {}), or a coroutine giving one; it raises console.CommandError on refusal.
TABLE = {
    "help": ("firmware.cmd_system", "cmd_help", "list commands"),
    "status": ("firmware.cmd_system", "cmd_status", "version, board, uptime, heap, flash"),
    "echo": ("firmware.cmd_system", "cmd_echo", "echo <text>: reply with the text"),
    "reboot": ("firmware.cmd_system", "cmd_reboot", "restart the terminal"),
}
