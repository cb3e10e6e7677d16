# The console's command table: one line per command, "name module function
# help" (module under firmware/). Modules are imported on first use, so rarely
# used commands cost no heap until then. One string, not a dict of tuples: a
# str constant stays in flash (ROMFS), a dict of 14 tuples cost ~3.5 KB heap.
# A handler takes the argument string and returns a dict (the OK reply), None
# (OK {}), or a coroutine giving one; it raises console.CommandError on refusal.
TABLE = """
help cmd_system cmd_help list commands
status cmd_system cmd_status version, board, uptime, heap, flash
echo cmd_system cmd_echo echo <text>: reply with the text
reboot cmd_system cmd_reboot restart the terminal
param cmd_param cmd_param param get <path>|set <path> <json>|export|import ...|check|log
region cmd_param cmd_region region list|use <code>|locate
batch cmd_param cmd_batch per-region batch summary
login cmd_param cmd_login login <operator> <pin>
logout cmd_param cmd_logout log the operator out
operator cmd_param cmd_operator operator list|add|remove|passwd
screen cmd_screen cmd_screen screen [raw]: text on the display, or its 1-bit image
sim cmd_sim cmd_sim sim key|tap|remove|scan|link|cell|signal|squeeze|clock (vterm only)
link cmd_link cmd_link link [set <json>|echo <host> <port> <text>|mqtt <host> <port>]
bench cmd_screen cmd_bench bench refresh|card <profile>: driver timings and heap
"""


def lookup(name):
    # (module, function) of a command, or None. Names are single words.
    if not name or " " in name or "\n" in name:
        return None
    i = TABLE.find("\n" + name + " ")
    if i < 0:
        return None
    parts = TABLE[i + 1:TABLE.find("\n", i + 1)].split(" ", 3)
    return "firmware." + parts[1], parts[2]


def entries():
    # (name, help) for every command, in table order.
    for ln in TABLE.split("\n"):
        if ln:
            p = ln.split(" ", 3)
            yield p[0], p[3]
