// npm run peer: meshguard's verdicts against Kyverno's Istio policies, on Kyverno's own test
// resources (tools/peer/kyverno-*.ts, run with tap). The suites are not part of the repository:
// when they are missing this says so and exits 0; otherwise it runs them and exits with tap's
// status. The first line of output always says which of the two happened.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PEER, ROOT } from './suites.ts';

const files = readdirSync(join(ROOT, 'tools/peer'))
  .filter((f) => /^kyverno-.*\.ts$/.test(f))
  .sort()
  .map((f) => join('tools/peer', f));

if (!existsSync(PEER)) {
  console.log(`peer comparison: not run (no Kyverno suites at ${PEER}; set MESHGUARD_PEER_SUITES to the folder holding kyverno-istio)`);
  process.exit(0);
}
console.log(`peer comparison: running ${files.length} files against ${PEER}`);
const tap = join(ROOT, 'node_modules/.bin/tap');
const r = spawnSync(tap, ['--disable-coverage', ...files], { cwd: ROOT, stdio: 'inherit' });
const code = r.status ?? 1;
console.log(`peer comparison: ${code === 0 ? 'passed' : `FAILED (tap exited ${r.status ?? r.signal})`}`);
process.exit(code);
