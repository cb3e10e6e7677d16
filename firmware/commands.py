# The console's command table: name -> (module, function, help). Modules are
# imported on first use, so rarely used commands cost no heap until then.
# A handler takes the argument string and returns a dict (the OK reply), None
# (OK {}), or a coroutine giving one; it raises console.CommandError on refusal.
TABLE = {
    "help": ("firmware.cmd_system", "cmd_help", "list commands"),
    "status": ("firmware.cmd_system", "cmd_status", "version, board, uptime, heap, flash"),
    "echo": ("firmware.cmd_system", "cmd_echo", "echo <text>: reply with the text"),
    "reboot": ("firmware.cmd_system", "cmd_reboot", "restart the terminal"),
    "param": ("firmware.cmd_param", "cmd_param", "param get <path>|set <path> <json>|export|import ...|check|log"),
    "region": ("firmware.cmd_param", "cmd_region", "region list|use <code>|locate"),
    "batch": ("firmware.cmd_param", "cmd_batch", "per-region batch summary"),
    "login": ("firmware.cmd_param", "cmd_login", "login <operator> <pin>"),
    "logout": ("firmware.cmd_param", "cmd_logout", "log the operator out"),
    "operator": ("firmware.cmd_param", "cmd_operator", "operator list|add|remove|passwd"),
    "screen": ("firmware.cmd_screen", "cmd_screen", "screen [raw]: text on the display, or its 1-bit image"),
    "sim": ("firmware.cmd_sim", "cmd_sim", "sim key|tap|remove|scan|link|cell|signal (vterm only)"),
    "link": ("firmware.cmd_link", "cmd_link", "link [set <json>|echo <host> <port> <text>|mqtt <host> <port>]"),
    "bench": ("firmware.cmd_screen", "cmd_bench", "bench refresh|card <profile>: driver timings and heap"),
}
