// The committed real-Istio fixtures match the pinned Istio: the generator runs again with the
// built istioctl into a temp dir, and every file it writes must equal the committed one (and no
// generated fixture may be missing). Regenerate with `node test/fixtures/istio/generate.ts`.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { generate } from '../fixtures/istio/generate.ts';
import { FIXTURES } from '../helpers/review.ts';
import { tempDir } from './helpers/istio.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const out = await tempDir('meshguard-istio-fresh-');
t.teardown(() => rm(out, { recursive: true, force: true }));
const n = await generate(out, false);

t.test(`the ${n} generated fixtures equal the committed ones`, async (t) => {
  for (const verdict of ['admit', 'deny']) {
    for (const f of readdirSync(join(out, verdict)).sort()) {
      const committed = join(FIXTURES, 'istio', verdict, f);
      let want = '';
      try {
        want = readFileSync(committed, 'utf8');
      } catch {
        t.fail(`${verdict}/${f} is generated but not committed (run node test/fixtures/istio/generate.ts)`);
        continue;
      }
      t.equal(readFileSync(join(out, verdict, f), 'utf8'), want, `${verdict}/${f} is current`);
    }
  }
});
