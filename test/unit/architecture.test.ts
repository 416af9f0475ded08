// The layout's promises, checked over the source: the core (src/core, src/policies) is pure and
// never imports the shell; it keeps no module-level mutable state; no source file grows past the
// size a reviewer reads in one sitting.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from '../helpers/review.ts';

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)))
    .sort();
}

/** Every module specifier a file imports or re-exports. */
function specifiers(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gms), ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1] as string);
}

const CORE = [...tsFiles('src/core'), ...tsFiles('src/policies')];
/** What the core may use besides itself and the configuration's types: pure libraries only. */
const PURE_PACKAGES = new Set(['fast-json-patch', 'ipaddr.js', 'tldts', 'yaml']);
const SHELL = /^src\/(webhook|serve|jobs|kube|cli|metrics)\/|^src\/(app|main|log)\.ts$/;

t.test('the core imports nothing from the shell and no I/O: only itself, config types and pure libraries', async (t) => {
  t.ok(CORE.length > 40, `${CORE.length} core modules found`);
  const problems: string[] = [];
  for (const file of CORE) {
    for (const spec of specifiers(file)) {
      if (spec.startsWith('.')) {
        const target = relative(ROOT, join(ROOT, file, '..', spec));
        if (SHELL.test(target)) problems.push(`${file} imports ${target}`);
        else if (target.startsWith('src/config/') && target !== 'src/config/types.ts') problems.push(`${file} imports ${target} (only config types are core)`);
      } else if (!PURE_PACKAGES.has(spec)) {
        problems.push(`${file} imports ${spec}`);
      }
    }
  }
  t.same(problems, [], 'no core module reaches into the shell or does I/O');
});

t.test('the core keeps no module-level mutable variables: caches belong to a rule set or a request', async (t) => {
  const problems = CORE.filter((file) => /^(?:export\s+)?(?:let|var)\s/m.test(readFileSync(join(ROOT, file), 'utf8')));
  t.same(problems, [], 'no top-level let or var in src/core or src/policies');
});

t.test('no source file is over 350 lines', async (t) => {
  const files = [...tsFiles('src'), ...tsFiles('tools')];
  t.ok(files.length > 100, `${files.length} files checked`);
  const long = files.map((f) => ({ f, lines: readFileSync(join(ROOT, f), 'utf8').split('\n').length - 1 })).filter((x) => x.lines > 350);
  t.same(long.map((x) => `${x.f}: ${x.lines}`), [], 'every file in src/ and tools/ has at most 350 lines');
});
