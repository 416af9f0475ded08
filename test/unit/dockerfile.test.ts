// The Dockerfile cannot be built here (no Docker engine), so it is parsed and its properties are
// asserted: multi-stage, every base image pinned by digest, npm ci + build + bundle in a build
// stage, only the bundle (dist/meshguard.mjs, its map and the third-party notices) in a distroless
// Node 24 nonroot final stage with no RUN (it has no shell) and no node_modules, numeric non-root
// USER, exec-form ENTRYPOINT running `/app/meshguard.mjs` with CMD `serve`, no HEALTHCHECK. Then the same
// bundle is built outside Docker into a directory with no node_modules and the entrypoint's
// command line is run there. (test/e2e/bundle.test.ts runs that bundle against the real apiserver.)
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { bundle } from '../../tools/bundle.ts';
import { imageEnv } from '../helpers/image.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/review.ts';

interface Instruction {
  readonly cmd: string;
  readonly args: string;
  readonly line: number;
}
interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Dockerfile into stages: comments dropped, `\` continuations joined, instructions upper-cased. */
function parseDockerfile(text: string): { stages: Stage[]; preamble: Instruction[] } {
  const stages: Stage[] = [];
  const preamble: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let l = lines[i] ?? '';
    if (/^\s*(#|$)/.test(l)) continue;
    while (/\\\s*$/.test(l) && i + 1 < lines.length) {
      i++;
      const next = lines[i] ?? '';
      if (/^\s*#/.test(next)) continue;
      l = l.replace(/\\\s*$/, ' ') + next.trim();
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(l);
    if (m === null) throw new Error(`line ${start + 1}: not an instruction: ${l}`);
    const ins = { cmd: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start + 1 };
    if (ins.cmd === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (f === null) throw new Error(`line ${ins.line}: bad FROM`);
      stages.push({ from: f[1] as string, name: f[2], instructions: [] });
    } else if (stages.length === 0) preamble.push(ins);
    else stages[stages.length - 1]?.instructions.push(ins);
  }
  return { stages, preamble };
}

const isExecForm = (args: string): boolean => {
  try {
    const v = JSON.parse(args) as unknown;
    return Array.isArray(v) && v.every((x) => typeof x === 'string');
  } catch {
    return false;
  }
};

const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const { stages } = parseDockerfile(text);
const final = stages[stages.length - 1] as Stage;
const of = (s: Stage, cmd: string): Instruction[] => s.instructions.filter((i) => i.cmd === cmd);

t.test('multi-stage, every base image pinned by digest', async (t) => {
  t.ok(stages.length >= 2, `${stages.length} stages`);
  for (const s of stages) {
    t.match(s.from, /^[^@\s]+@sha256:[a-f0-9]{64}$/, `FROM ${s.from} is pinned by digest`);
  }
  const names = stages.slice(0, -1).map((s) => s.name);
  t.ok(names.every((n) => n !== undefined), 'every build stage is named');
});

t.test('the build stage installs everything, compiles and bundles; the final stage gets the bundle and nothing else', async (t) => {
  const runs = stages.slice(0, -1).flatMap((s) => of(s, 'RUN').map((r) => ({ stage: s.name, cmd: (JSON.parse(r.args) as string[]).join(' ') })));
  t.ok(runs.some((r) => /^npm ci\b/.test(r.cmd) && !r.cmd.includes('--omit=dev')), 'npm ci with dev dependencies (TypeScript, esbuild) in a build stage');
  t.ok(runs.some((r) => r.cmd === 'npm run build'), 'npm run build (tsc: a type error fails the image build)');
  t.ok(runs.some((r) => r.cmd === 'npm run bundle'), 'npm run bundle');
  const copies = of(final, 'COPY');
  t.notOk(copies.some((c) => c.args.includes('node_modules')), 'no node_modules in the final stage');
  for (const c of copies) {
    const from = /--from=(\S+)/.exec(c.args)?.[1];
    t.ok(from !== undefined && stages.some((s) => s.name === from), `COPY ${c.args}: from a named stage, not the build context`);
  }
  const copied = copies.flatMap((c) => c.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
  t.same(copied.sort(), ['/app/dist/THIRD-PARTY-NOTICES.txt', '/app/dist/meshguard.mjs', '/app/dist/meshguard.mjs.map'], 'the bundle, its source map and the notices');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  t.match(pkg.scripts?.['build'] ?? '', /tsc -p tsconfig\.build\.json/, 'npm run build is tsc with tsconfig.build.json');
  t.equal(pkg.scripts?.['bundle'], 'node tools/bundle.ts', 'npm run bundle writes dist/meshguard.mjs');
});

t.test('the final stage: distroless Node 24 nonroot, no shell, non-root, exec-form entrypoint, no HEALTHCHECK', async (t) => {
  t.match(final.from, /^gcr\.io\/distroless\/nodejs24-debian12:nonroot@sha256:/, 'distroless Node 24, nonroot variant');
  t.equal(of(final, 'RUN').length, 0, 'no RUN (the image has no shell)');
  for (const s of stages) for (const r of of(s, 'RUN')) t.ok(isExecForm(r.args), `line ${r.line}: RUN in exec form`);
  const user = of(final, 'USER');
  t.equal(user.length, 1);
  t.match(user[0]?.args ?? '', /^65532(:65532)?$/, 'numeric UID 65532 (runAsNonRoot can verify a number)');
  const ep = of(final, 'ENTRYPOINT');
  t.equal(ep.length, 1);
  t.ok(isExecForm(ep[0]?.args ?? ''), 'ENTRYPOINT in exec form (signals reach node directly)');
  t.same(JSON.parse(ep[0]?.args ?? '[]'), ['/nodejs/bin/node', '/app/meshguard.mjs'], 'the entrypoint is meshguard: the image runs any subcommand');
  const cmd = of(final, 'CMD');
  t.equal(cmd.length, 1);
  t.same(JSON.parse(cmd[0]?.args ?? '[]'), ['serve'], 'the default command is serve');
  t.notOk(stages.some((s) => of(s, 'HEALTHCHECK').length > 0), 'no HEALTHCHECK: the chart probes /healthz and /readyz');
  t.ok(existsSync(join(ROOT, 'src/main.ts')), 'src/main.ts exists');
});

t.test('.dockerignore keeps local state and secrets out of the build context', async (t) => {
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
  for (const p of ['.git', 'node_modules', 'dist', 'certs', 'test', '*.pem', '*.key']) t.ok(ignored.includes(p), `${p} is ignored`);
  for (const c of stages.flatMap((s) => of(s, 'COPY')).filter((c) => !c.args.includes('--from='))) {
    const sources = c.args.split(/\s+/).slice(0, -1);
    for (const src of sources) t.notOk(ignored.includes(src), `COPY ${src}: not excluded by .dockerignore`);
  }
});

t.test('the build replayed without Docker: the bundle in a directory with no node_modules, then the entrypoint command line runs there with the image settings and prints no warning', async (t) => {
  const app = mkdtempSync(join(tmpdir(), 'mg-image-'));
  t.teardown(() => rmSync(app, { recursive: true, force: true }));
  const r = await bundle(join(app, 'meshguard.mjs'));
  t.same(r.warnings, [], 'esbuild reports no warning');
  t.same(readdirSync(app).sort(), ['THIRD-PARTY-NOTICES.txt', 'meshguard.mjs', 'meshguard.mjs.map'], 'what the final stage copies');
  t.ok(r.packages.some((p) => p.startsWith('@kubernetes/client-node@')) && r.packages.some((p) => p.startsWith('fastify@')), `${r.packages.length} bundled packages, client-node and fastify among them`);
  const notices = readFileSync(r.noticesFile, 'utf8');
  for (const p of r.packages) t.ok(notices.includes(`${p} (`), `${p} is in the notices`);
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...imageEnv(text) };
  const help = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [join(app, 'meshguard.mjs'), 'serve', '--help'], { cwd: app, env }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr })),
  );
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /Usage: meshguard serve/, 'node /app/meshguard.mjs serve --help');
  t.equal(help.stderr, '', 'nothing on stderr (no deprecation warning)');
  for (const [args, want] of [[['--version'], /^meshguard \d+\.\d+\.\d+/], [['check', '--help'], /Usage: meshguard check/], [['scan', '--help'], /Usage: meshguard scan/], [['verify', '--help'], /Usage: meshguard verify/]] as const) {
    const r = await new Promise<{ code: number; stdout: string }>((resolve) =>
      execFile(process.execPath, [join(app, 'meshguard.mjs'), ...args], { cwd: app, env }, (err, stdout) => resolve({ code: err ? 1 : 0, stdout })),
    );
    t.equal(r.code, 0, `node /app/meshguard.mjs ${args.join(' ')}`);
    t.match(r.stdout, want, `the image runs ${args.join(' ')}`);
  }
  const warn = await new Promise<{ stderr: string }>((resolve) =>
    execFile(
      process.execPath,
      ['--input-type=module', '-e', `await import(${JSON.stringify(join(app, 'meshguard.mjs'))}); process.emitWarning('silenced', 'DeprecationWarning', 'DEP0169'); process.emitWarning('kept', 'DeprecationWarning', 'DEP9999'); process.emitWarning('kept too', { type: 'DeprecationWarning', code: 'DEP9998' });`],
      { cwd: app },
      (_err, _stdout, stderr) => resolve({ stderr }),
    ),
  );
  t.notMatch(warn.stderr, 'silenced', "the bundle drops DEP0169 (url.parse from node-fetch), which Node drops for node_modules' calls");
  t.match(warn.stderr, /\[DEP9999\] DeprecationWarning: kept/, 'any other warning still prints');
  t.match(warn.stderr, /\[DEP9998\] DeprecationWarning: kept too/, 'in either calling form');
});
