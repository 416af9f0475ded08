// The Dockerfile cannot be built here (no Docker engine), so it is parsed and its properties are
// asserted: multi-stage, every base image pinned by digest, npm ci + build in a build stage,
// production dependencies only in a distroless Node 24 nonroot final stage with no RUN (it has no
// shell), numeric non-root USER, exec-form ENTRYPOINT running `dist/main.js serve`, no
// HEALTHCHECK. Then the same build is replayed outside Docker (tsc into a temp dir) and the
// entrypoint's command line is run.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync, existsSync } from 'node:fs';
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

t.test('the build stage installs everything and compiles; the dependencies stage omits dev dependencies', async (t) => {
  const runs = stages.slice(0, -1).flatMap((s) => of(s, 'RUN').map((r) => ({ stage: s.name, cmd: (JSON.parse(r.args) as string[]).join(' ') })));
  t.ok(runs.some((r) => /^npm ci\b/.test(r.cmd) && !r.cmd.includes('--omit=dev')), 'npm ci with dev dependencies (TypeScript) in a build stage');
  t.ok(runs.some((r) => r.cmd === 'npm run build'), 'npm run build');
  const prod = runs.find((r) => /^npm ci\b.*--omit=dev/.test(r.cmd));
  t.ok(prod, 'npm ci --omit=dev in a stage of its own');
  const nodeModules = of(final, 'COPY').filter((c) => c.args.includes('node_modules'));
  t.equal(nodeModules.length, 1, 'node_modules copied once into the final stage');
  t.match(nodeModules[0]?.args ?? '', new RegExp(`--from=${prod?.stage ?? '?'}\\b`), 'from the production-only stage');
  for (const c of of(final, 'COPY')) {
    const from = /--from=(\S+)/.exec(c.args)?.[1];
    t.ok(from !== undefined && stages.some((s) => s.name === from), `COPY ${c.args}: from a named stage, not the build context`);
  }
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { type?: string; scripts?: Record<string, string> };
  t.equal(pkg.type, 'module', 'package.json (copied into the image) makes dist/*.js ES modules');
  t.match(pkg.scripts?.['build'] ?? '', /tsc -p tsconfig\.build\.json/, 'npm run build is tsc with tsconfig.build.json');
  const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { compilerOptions: { outDir: string; rootDir: string } };
  t.same([build.compilerOptions.outDir, build.compilerOptions.rootDir], ['dist', 'src'], 'src/main.ts compiles to dist/main.js');
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
  t.same(JSON.parse(ep[0]?.args ?? '[]'), ['/nodejs/bin/node', '/app/dist/main.js', 'serve']);
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

t.test('the build replayed without Docker: tsc to dist/, then the entrypoint command line runs', async (t) => {
  const app = mkdtempSync(join(tmpdir(), 'mg-image-'));
  t.teardown(() => rmSync(app, { recursive: true, force: true }));
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const run = (args: string[], cwd: string): Promise<{ code: number; out: string }> =>
    new Promise((resolve) => execFile(process.execPath, args, { cwd, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })));
  const built = await run([tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(app, 'dist')], ROOT);
  t.equal(built.code, 0, built.out);
  copyFileSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'));
  const help = await run([join(app, 'dist/main.js'), 'serve', '--help'], app);
  t.equal(help.code, 0, help.out);
  t.match(help.out, /Usage: meshguard serve/, 'node /app/dist/main.js serve --help');
});
