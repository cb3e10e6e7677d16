// What the Node.js runners of the 32-bit MicroPython share (run.mjs, which
// boots the firmware, and tests/mpy/runner_wasm32.mjs, which runs unit tests):
// loading the port, and copying host folders into its in-memory filesystem,
// the only files it can see.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

// The port from its npm package folder; every stdout line goes to ours, then to onLine.
export async function loadPort(pkg, heapsize, onLine = () => {}) {
  const { loadMicroPython } = await import(pathToFileURL(path.resolve(pkg, "micropython.mjs")).href);
  return loadMicroPython({
    heapsize,
    linebuffer: true,
    stdout: (line) => {
      process.stdout.write(line + "\n");
      onLine(line);
    },
    stderr: (line) => process.stderr.write(line + "\n"),
  });
}

// Copy the host folder src to dst in the port (files for which keep(name) is true).
export function copyTree(M, src, dst, keep = () => true) {
  M.FS.mkdirTree(dst);
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, e.name);
    if (e.isDirectory()) {
      if (e.name !== "__pycache__") copyTree(M, s, dst + "/" + e.name, keep);
    } else if (keep(e.name)) {
      M.FS.writeFile(dst + "/" + e.name, fs.readFileSync(s));
    }
  }
}
