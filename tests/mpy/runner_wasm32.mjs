// Runs one test function of a tests/mpy file on the 32-bit MicroPython
// (WebAssembly port, see tools/roampos/vterm/wasm32.py), as runner.py does on
// the unix port:
//   node runner_wasm32.mjs PACKAGE_DIR ROOT FILE TEST_NAME
// The port cannot see the host's files: the code the tests import (firmware/,
// drivers/, lib/, the device models tools/vterm/vhw, tests/mpy) is copied into
// its in-memory filesystem under /t, with sys.path as MICROPYPATH is for
// runner.py. Exits 0 when runner.py printed PASS.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [pkg, root, file, name] = process.argv.slice(2);
const { copyTree, loadPort } = await import(
  pathToFileURL(path.resolve(root, "tools", "vterm", "wasm32", "port.mjs")).href);
let passed = false;
const mp = await loadPort(pkg, 512 * 1024, (line) => {
  if (line === "PASS " + name) passed = true;
});
const M = mp._module;
const code = (n) => /\.(py|json)$/.test(n);
for (const d of ["firmware", "drivers", "lib"]) {
  if (fs.existsSync(path.join(root, d))) copyTree(M, path.join(root, d), "/t/" + d, code);
}
copyTree(M, path.join(root, "tools", "vterm", "vhw"), "/t/vhw", code);
copyTree(M, path.join(root, "tests", "mpy"), "/t/tests/mpy", code);

const target = "/t/tests/mpy/" + path.basename(file);
try {
  mp.runPython(`
import os, sys
os.chdir("/t")
sys.path[:] = ["", ".frozen", "/t", "/t/lib", "/t/tests/mpy"]
sys.argv[:] = ["runner.py", ${JSON.stringify(target)}, ${JSON.stringify(name)}]
with open("/t/tests/mpy/runner.py") as f:
    exec(f.read(), {"__name__": "__main__"})
`);
} catch (e) {
  // runner.py's sys.exit(1) after a failure, or an error before the test ran
  if (!passed) process.stderr.write(String(e.message || e) + "\n");
}
process.exit(passed ? 0 : 1);
