# Terminal-wide state that several subsystems read and one writes: a plain
# module so that it costs a few bytes and no imports. Writers are named below.
mode = "booting"      # params: "ready" | "not provisioned" | "parameters damaged"
mode_detail = ""      # params: what is wrong, for the screen and `status`
region = None         # params: active region code, e.g. "310000"
region_name = ""      # params: its display name
currency = 156        # params: its currency, ISO 4217 numeric (the cards' 5F2A)
operator = None       # params: logged-in operator id, or None
role = None           # params: "cashier" | "supervisor" | "admin" | None
seen_ms = 0           # console: boards.ticks_ms() of the last operator command or key press
session = None        # session: the task that ends an idle operator session, or None
location = None       # link/modem: {"mcc":..,"mnc":..,"lac":..,"ci":..} or {"bssid":..}
location_warning = None  # params: text shown when the location is outside the grants
location_region = None  # params: region code that `location` maps to, or None
params_version = 0    # params: the acquirer's parameter set version (status, sign-on)
link = "offline"      # link manager: "offline" | "wifi" | "cell"
status_hooks = []      # any subsystem: callables returning dicts merged into `status`
pin_fail_ms = None     # operators: ticks_ms of the last wrong PIN since boot (here, not in operators:
                       # that module is unloaded after every command and would forget it)
