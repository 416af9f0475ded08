#!/usr/bin/env node
// Launcher: the compiled build (dist/) when present, else the TypeScript sources run by
// Node's type stripping (Node >= 22.18 / 23.6; npm scripts use the pinned Node 24).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const mod = existsSync(dist) ? await import(dist) : await import('./main.ts');
process.exitCode = await mod.main(process.argv.slice(2));
