// The image's server: src/main.ts and its production dependencies as one ESM file
// (dist/meshguard.mjs), minified, with a source map and the bundled packages' licences beside it
// (dist/THIRD-PARTY-NOTICES.txt).
//
// Why: run from node_modules, meshguard holds every module's full source in memory, and
// @kubernetes/client-node alone is 21 MB of JavaScript loaded whole through its index. One
// minified file cuts peak RSS with 50 000 namespaces cached by about 20 MiB (docs/performance.md).
//
// Usage: node tools/bundle.ts [--outfile dist/meshguard.mjs]
import { build, type Metafile, type Plugin } from 'esbuild';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

// node-fetch 2 (under client-node) requires whatwg-url at load and uses it only where the runtime
// has no global URL, which Node 22+ always has. Left in, whatwg-url requires Node's deprecated
// `punycode` module, and from outside node_modules that prints DEP0040 at every start.
const WHATWG_URL_SHIM = 'module.exports = { URL: globalThis.URL, URLSearchParams: globalThis.URLSearchParams };';

const nodeFetchUrl: Plugin = {
  name: 'node-fetch-url',
  setup(b) {
    b.onResolve({ filter: /^whatwg-url$/ }, (args) => ({ path: args.path, namespace: 'meshguard-shim' }));
    b.onLoad({ filter: /.*/, namespace: 'meshguard-shim' }, () => ({ contents: WHATWG_URL_SHIM, loader: 'js' }));
  },
};

// Run before any bundled module:
// - CommonJS dependencies call require() for Node's built-in modules; an ES module has none.
// - Node prints some deprecation warnings only for calls from outside node_modules, because the
//   application cannot act on its dependencies' calls. In the bundle every dependency is outside
//   node_modules, so those warnings are dropped here for the calls Node would have silenced:
//   DEP0169, url.parse(), which node-fetch 2 (under client-node) calls for every API request.
//   meshguard's own code does not call url.parse().
const SILENCED_DEPRECATIONS = ['DEP0169'];
const BANNER = [
  "import { createRequire as __mgCreateRequire } from 'node:module';",
  'const require = __mgCreateRequire(import.meta.url);',
  `const __mgSilenced = new Set(${JSON.stringify(SILENCED_DEPRECATIONS)});`,
  'const __mgEmitWarning = process.emitWarning;',
  'process.emitWarning = function (warning, ...rest) {',
  "  const code = typeof rest[0] === 'object' && rest[0] !== null ? rest[0].code : rest[1];",
  '  if (__mgSilenced.has(code)) return;',
  '  return __mgEmitWarning.call(this, warning, ...rest);',
  '};',
].join('\n');

export interface BundleResult {
  readonly outfile: string;
  readonly noticesFile: string;
  readonly bytes: number;
  /** name@version of every package with code in the bundle. */
  readonly packages: readonly string[];
  readonly warnings: readonly string[];
}

/** The packages (node_modules/<name>, nested too) that put code into the output. */
function bundledPackages(meta: Metafile): string[] {
  const roots = new Set<string>();
  for (const out of Object.values(meta.outputs)) {
    for (const [input, v] of Object.entries(out.inputs)) {
      if (v.bytesInOutput === 0) continue;
      const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
      if (m?.[1] !== undefined) roots.add(m[1]);
    }
  }
  return [...roots].sort();
}

/** Each bundled package's name, version, licence and licence file(s), for the image. */
function notices(roots: readonly string[]): { text: string; packages: string[] } {
  const parts: string[] = [];
  const packages: string[] = [];
  for (const root of roots) {
    const dir = join(ROOT, root);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string; license?: string };
    const id = `${pkg.name ?? root}@${pkg.version ?? '?'}`;
    packages.push(id);
    const files = readdirSync(dir).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f)).sort();
    const texts = files.map((f) => readFileSync(join(dir, f), 'utf8').trim());
    parts.push(`${id} (${pkg.license ?? 'licence not declared'})\n${texts.length > 0 ? texts.join('\n\n') : '(no licence file in the package)'}`);
  }
  const line = '-'.repeat(78);
  return { text: `Third-party software bundled into meshguard.mjs\n${line}\n${parts.join(`\n${line}\n`)}\n`, packages };
}

/** Bundle src/main.ts (or another entry point: the benchmark bundles its decision-path floor the
 * same way) into `outfile`. */
export async function bundle(outfile = `${ROOT}dist/meshguard.mjs`, entry = `${ROOT}src/main.ts`): Promise<BundleResult> {
  const r = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    // Whitespace and syntax only: identifiers keep their names, so stack traces and error names
    // stay readable without the source map. (esbuild's keepNames would do that for renamed
    // identifiers too, but it wraps every function created at run time in a call that sets its
    // name: 13 us more CPU per Pod CREATE in the benchmark.)
    minifyWhitespace: true,
    minifySyntax: true,
    minifyIdentifiers: false,
    sourcemap: 'linked',
    legalComments: 'none',
    metafile: true,
    logLevel: 'silent',
    plugins: [nodeFetchUrl],
    banner: { js: BANNER },
  });
  const bytes = Object.values(r.metafile.outputs).reduce((n, o) => n + (o.entryPoint !== undefined ? o.bytes : 0), 0);
  const n = notices(bundledPackages(r.metafile));
  const noticesFile = join(dirname(outfile), 'THIRD-PARTY-NOTICES.txt');
  writeFileSync(noticesFile, n.text);
  return { outfile, noticesFile, bytes, packages: n.packages, warnings: r.warnings.map((w) => `${w.location?.file ?? ''}:${w.location?.line ?? ''} ${w.text}`) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { outfile: { type: 'string' } } });
  const r = await bundle(values.outfile);
  for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stdout.write(`wrote ${r.outfile} (${(r.bytes / 1e6).toFixed(1)} MB, ${r.packages.length} packages) and ${r.noticesFile}\n`);
}
