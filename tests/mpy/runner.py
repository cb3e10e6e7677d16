# Runs one test function of a tests/mpy file inside MicroPython:
#   micropython runner.py <file> <test_name>
# Prints "PASS <name>" or the traceback, and exits non-zero on failure.
import sys

path, name = sys.argv[1], sys.argv[2]
g = {"__name__": "mpytest", "__file__": path}
with open(path) as f:
    exec(f.read(), g)
try:
    g[name]()
except BaseException as e:
    sys.print_exception(e)
    print("FAIL " + name)
    sys.exit(1)
print("PASS " + name)
