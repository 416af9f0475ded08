#!/usr/bin/env node
// Launcher (package.json "bin"): the bundle (dist/meshguard.mjs, built by `npm run bundle` and by
// `prepack`, so an installed package always has it) when present: one file, nothing to resolve,
// `meshguard --help` in a fraction of the time the sources take; else the compiled build
// (dist/main.js); else the TypeScript sources run by Node's type stripping (a checkout without a
// build; npm scripts use the pinned Node 24).
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

// Node's on-disk compile cache (Node >= 22.1; a no-op where absent): later runs skip compiling
// the 4 MB bundle again.
module.enableCompileCache?.();

const candidates = ['../dist/meshguard.mjs', '../dist/main.js', './main.ts'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
const mod = await import(candidates.find((p) => existsSync(p)) ?? candidates[candidates.length - 1]);
process.exitCode = await mod.main(process.argv.slice(2));
