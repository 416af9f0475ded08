// The reference pages, the error list and the rule list stay in sync with the code.
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PAGES } from '../../tools/sync-docs.ts';
import { ERRORS } from '../../src/errors.ts';
import { RULES } from '../../src/policies/registry.ts';
import { ROOT } from '../helpers/review.ts';

t.test('generated reference pages are up to date (run npm run docs)', async (t) => {
  for (const [page, make] of Object.entries(PAGES)) {
    t.equal(readFileSync(join(ROOT, page), 'utf8'), make(), `${page} is current`);
  }
});

t.test('every rule id is its module name, unique and kebab-case', async (t) => {
  const files = new Set(readdirSync(join(ROOT, 'src/policies')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)));
  const ids = RULES.map((r) => r.id);
  t.equal(new Set(ids).size, ids.length, 'ids are unique');
  for (const id of ids) {
    t.match(id, /^[a-z0-9]+(-[a-z0-9]+)*$/, `${id} is kebab-case`);
    t.ok(files.has(id), `${id} lives in src/policies/${id}.ts`);
  }
});

t.test('every error code is unique, prefixed and documented', async (t) => {
  const codes = Object.values(ERRORS).map((e) => e.code);
  t.equal(new Set(codes).size, codes.length);
  for (const c of codes) t.match(c, /^MG_[A-Z_]+$/);
  const doc = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');
  for (const c of codes) t.match(doc, `\`${c}\``, `${c} is in docs/errors.md`);
});
