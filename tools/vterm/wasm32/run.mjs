// The firmware on a 32-bit MicroPython: MicroPython's WebAssembly port (the
// npm package @micropython/micropython-webassembly-pyscript, wasm32: 4-byte
// pointers as on an ESP32-S3 or RP2040) under Node.js, with the vterm's
// ROMFS and device models. Started by `python -m roampos.vterm.wasm32`, which
// gives us:
//   argv: PACKAGE_DIR ROMFS_IMAGE FLASH_DIR LAUNCH_DIR HEAP_BYTES
//   env ROAMPOS_HWFD       a connected socket to the device models (roampos.vterm.hw)
//   env ROAMPOS_HWMEM_FILE their shared page (keypad levels)
// The port has no AF_UNIX sockets, no mmap and no littlefs, so this file is
// the board around it: the ROMFS is copied into wasm memory outside the GC
// heap (memory-mapped flash: .mpy runs in place), the bus frames go through
// _vhwjs.tx/rx (blocking reads and writes on the socket descriptor), the
// flash's files sit in the port's in-memory filesystem. It runs until the
// firmware's ready event (the heap figure is taken there) and then exits:
// after that the port's asyncio, which has no stream I/O, could not serve
// the console.
import fs from "node:fs";
import path from "node:path";
import { copyTree, loadPort } from "./port.mjs";

const [pkg, romFile, flashDir, launchDir, heap] = process.argv.slice(2);

function finish(code, why) {
  if (why) process.stderr.write("wasm32: " + why + "\n");
  process.exit(code);
}
const timer = setTimeout(() => finish(1, "no ready event within 20 s"), 20000);

const mp = await loadPort(pkg, parseInt(heap, 10), (line) => {
  if (line.startsWith("EVT ") && line.includes('"ready"')) {
    clearTimeout(timer);
    finish(0);
  }
});
const M = mp._module;

// The ROM: outside the GC heap, never freed (as flash is).
const rom = fs.readFileSync(romFile);
const romAddr = M._malloc(rom.length);
M.HEAPU8.set(rom, romAddr);

// The keypad page: a copy of the levels the vterm computed for every row
// pattern (nothing is pressed before ready); byte 0 is the firmware's.
const PAGE = 4096;
const pageAddr = M._malloc(PAGE);
M.HEAPU8.set(fs.readFileSync(process.env.ROAMPOS_HWMEM_FILE).subarray(0, PAGE), pageAddr);
M.HEAPU8[pageAddr] = 0;

const fd = parseInt(process.env.ROAMPOS_HWFD, 10);
mp.registerJsModule("_vhwjs", {
  rom: romAddr,
  romsize: rom.length,
  page: pageAddr,
  pagesize: PAGE,
  // M.HEAPU8 is looked up each time: wasm memory may grow and replace it.
  tx: (addr, n) => {
    for (let o = 0; o < n; ) o += fs.writeSync(fd, M.HEAPU8, addr + o, n - o);
  },
  rx: (addr, n) => {
    for (let o = 0; o < n; ) {
      const k = fs.readSync(fd, M.HEAPU8, addr + o, n - o, null);
      if (k === 0) finish(1, "the device models closed the bus");
      o += k;
    }
  },
});

copyTree(M, flashDir, "/flash");
copyTree(M, launchDir, "/wasm");

try {
  mp.runPython(fs.readFileSync(path.join(launchDir, "launch.py"), "utf8"));
} catch (e) {
  finish(1, String(e.message || e));
}
