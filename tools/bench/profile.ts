// Summarize a V8 .cpuprofile (node --cpu-prof): self time per function, self time per package
// or area, and inclusive time of chosen functions.
//
//   node tools/bench/profile.ts FILE.cpuprofile [--top 25]
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber?: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export interface ProfileEntry {
  readonly name: string;
  readonly where: string;
  readonly ms: number;
  /** Share of busy (non-idle) time. */
  readonly share: number;
}

export interface ProfileSummary {
  readonly file: string;
  /** True when only the load window's samples were counted. */
  readonly windowed: boolean;
  readonly totalMs: number;
  readonly busyMs: number;
  readonly topSelf: readonly ProfileEntry[];
  readonly byArea: readonly ProfileEntry[];
  readonly inclusive: readonly ProfileEntry[];
}

const ROOT = new URL('../../', import.meta.url).href;

function shortUrl(url: string): string {
  if (url === '') return '';
  let u = url.startsWith(ROOT) ? url.slice(ROOT.length) : url;
  u = u.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/');
  return u;
}

/** Package or area of a frame: a node_modules package, meshguard's own folder, Node internals, V8. */
export function area(cf: CallFrame): string {
  const u = shortUrl(cf.url);
  if (u === '') {
    if (cf.functionName === '(garbage collector)') return 'V8 garbage collector';
    if (cf.functionName === '(idle)' || cf.functionName === '(program)' || cf.functionName === '(root)') return cf.functionName;
    return 'native (JSON.parse, JSON.stringify, crypto, builtins)';
  }
  const nm = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm !== null) return nm[1] as string;
  if (u.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([^/]+)/.exec(u);
    const part = m?.[1] ?? 'internal';
    return `node:${['_http_server', '_http_common', '_http_outgoing', '_http_incoming', 'http'].includes(part) ? 'http' : ['tls', '_tls_wrap', 'stream_base_commons', 'net'].includes(part) ? 'tls/net' : part}`;
  }
  if (/(^|\/)floor\.(mjs|ts)$/.test(u)) return 'floor handler (its JSON.parse inlined here)';
  const own = /^(?:\.cache\/bench(?:-quick)?\/)?(?:dist|src)\/([^/]+)/.exec(u);
  if (own !== null) {
    const dir = own[1]?.replace(/\.(ts|js)$/, '') ?? '';
    return dir === 'server' ? 'meshguard server (parseJsonBody: JSON.parse inlined here)' : `meshguard ${dir}`;
  }
  return u;
}

/**
 * Frames in a bundle (the image's dist/meshguard.mjs) mapped back to their sources through the
 * bundle's source map, so the areas are the same packages and folders as for an unbundled run.
 */
function unbundle(p: CpuProfile): CpuProfile {
  const maps = new Map<string, SourceMap | undefined>();
  const mapOf = (url: string): SourceMap | undefined => {
    if (!maps.has(url)) {
      let m: SourceMap | undefined;
      try {
        const file = `${fileURLToPath(url)}.map`;
        if (existsSync(file)) m = new SourceMap(JSON.parse(readFileSync(file, 'utf8')) as ConstructorParameters<typeof SourceMap>[0]);
      } catch {
        m = undefined;
      }
      maps.set(url, m);
    }
    return maps.get(url);
  };
  const nodes = p.nodes.map((n) => {
    const cf = n.callFrame;
    if (!cf.url.startsWith('file:')) return n;
    const m = mapOf(cf.url);
    if (m === undefined) return n;
    const e = m.findEntry(cf.lineNumber, cf.columnNumber ?? 0);
    if (!('originalSource' in e) || e.originalSource === undefined) return n;
    const url = new URL(e.originalSource, cf.url).href;
    return { ...n, callFrame: { ...cf, url, lineNumber: e.originalLine, columnNumber: e.originalColumn } };
  });
  return { ...p, nodes };
}

/** Functions whose inclusive time is reported (by name, when meshguard's or Fastify's). */
const INCLUSIVE = ['decodeReview', 'reviewRequest', 'reviewValidate', 'reviewMutate', 'evaluate', 'mutate', 'parseJsonBody', 'observeReview', 'write', 'serialize', 'onSendEnd', 'handleRequest', 'runPreParsing', 'rawBody', 'wrapThenable', 'compare'];

/** `window`: only samples taken between these monotonic timestamps (µs, process.hrtime's clock,
 * which V8's profiler shares on Linux); all samples when it would leave none. */
export function summarize(file: string, top = 25, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const p = unbundle(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const collect = (from: number, to: number): Map<number, number> => {
    const self = new Map<number, number>();
    let ts = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      const dt = p.timeDeltas[i] ?? 0;
      ts += dt;
      if (ts < from || ts > to) continue;
      const id = p.samples[i] as number;
      self.set(id, (self.get(id) ?? 0) + dt);
    }
    return self;
  };
  let selfUs = collect(window?.fromUs ?? -Infinity, window?.toUs ?? Infinity);
  const windowed = window !== undefined && selfUs.size > 0;
  if (!windowed) selfUs = collect(-Infinity, Infinity);
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  let idleUs = 0;
  const fnSelf = new Map<string, { name: string; where: string; us: number }>();
  const areaSelf = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const cf = (byId.get(id) as ProfileNode).callFrame;
    if (cf.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const where = cf.url === '' ? '' : `${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
    const key = `${cf.functionName}@${where}`;
    const e = fnSelf.get(key) ?? { name: cf.functionName || '(anonymous)', where, us: 0 };
    e.us += us;
    fnSelf.set(key, e);
    const a = area(cf);
    areaSelf.set(a, (areaSelf.get(a) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;

  // Inclusive time: every sample counts once for each distinct function on its stack.
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const incl = new Map<string, { name: string; where: string; us: number }>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = (byId.get(cur) as ProfileNode).callFrame;
      if (!INCLUSIVE.includes(cf.functionName)) continue;
      const u = shortUrl(cf.url);
      if (!(u.startsWith('src/') || u.startsWith('dist/') || u.startsWith('.cache/') || u.startsWith('node_modules/fastify') || u.startsWith('node_modules/fast-json-patch') || u.startsWith('node_modules/prom-client'))) continue;
      const key = `${cf.functionName}@${u}:${cf.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const e = incl.get(key) ?? { name: cf.functionName, where: `${u}:${cf.lineNumber + 1}`, us: 0 };
      e.us += us;
      incl.set(key, e);
    }
  }
  const entry = (e: { name: string; where: string; us: number }): ProfileEntry => ({ name: e.name, where: e.where, ms: e.us / 1000, share: busyUs > 0 ? e.us / busyUs : 0 });
  return {
    file,
    windowed,
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    topSelf: [...fnSelf.values()].sort((a, b) => b.us - a.us).slice(0, top).map(entry),
    byArea: [...areaSelf.entries()].map(([name, us]) => ({ name, where: '', us })).sort((a, b) => b.us - a.us).map(entry),
    inclusive: [...incl.values()].sort((a, b) => b.us - a.us).map(entry),
  };
}

export function profileText(s: ProfileSummary): string {
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const lines = [`${s.busyMs.toFixed(0)} ms busy of ${s.totalMs.toFixed(0)} ms sampled${s.windowed ? ' (load window only)' : ' (whole process)'}`, '', 'self time by area:'];
  for (const e of s.byArea) lines.push(`  ${pct(e.share).padStart(6)}  ${e.name}`);
  lines.push('', 'top self time:');
  for (const e of s.topSelf) lines.push(`  ${pct(e.share).padStart(6)}  ${e.name}  ${e.where}`);
  lines.push('', 'inclusive time:');
  for (const e of s.inclusive) lines.push(`  ${pct(e.share).padStart(6)}  ${e.name}  ${e.where}`);
  return `${lines.join('\n')}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
  const f = positionals[0];
  if (f === undefined) {
    process.stderr.write('usage: profile.ts FILE.cpuprofile [--top N]\n');
    process.exit(2);
  }
  process.stdout.write(profileText(summarize(f, Number(values.top))));
}

export interface AreaDiffRow {
  readonly area: string;
  /** µs of self time per request. */
  readonly aUs: number;
  readonly bUs: number;
}

/** Self time per request by area for two profiles (e.g. meshguard and the floor under the same
 * load), largest difference first. */
export function areaDiff(a: ProfileSummary, aRequests: number, b: ProfileSummary, bRequests: number): AreaDiffRow[] {
  const per = (s: ProfileSummary, n: number): Map<string, number> => new Map(s.byArea.map((e) => [e.name, n > 0 ? (e.ms * 1000) / n : 0]));
  const pa = per(a, aRequests);
  const pb = per(b, bRequests);
  const areas = new Set([...pa.keys(), ...pb.keys()]);
  return [...areas]
    .filter((x) => x !== '(idle)')
    .map((area) => ({ area, aUs: pa.get(area) ?? 0, bUs: pb.get(area) ?? 0 }))
    .sort((x, y) => Math.abs(y.aUs - y.bUs) - Math.abs(x.aUs - x.bUs));
}
