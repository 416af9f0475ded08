// meshguard check: the admission pipeline over manifests, offline. Namespaces in the input are
// the cluster state (as meshguard's mutation would store them).
import { parseArgs } from 'node:util';
import type { KObject } from '../admission/types.ts';
import { StaticClusterState } from '../cluster/state.ts';
import type { Config } from '../config/types.ts';
import { runPipeline } from '../engine/offline.ts';
import type { Result } from '../engine/types.ts';
import { BUILTIN_RULES, ruleById } from '../policies/registry.ts';
import { EXIT, UsageError, type Io } from './args.ts';
import { readInputs, type Manifest } from './manifests.ts';
import { configFromFlags } from './serve.ts';

export const CHECK_HELP = `Usage: meshguard check -f <file|dir|-> [-f ...] [flags]

Evaluates Kubernetes manifests (multi-document YAML or JSON, directories recursively, - for
stdin) with the same rules as the webhook. Namespaces in the input are the cluster state.

Flags:
  -f, --filename PATH  manifest file, directory or - (repeatable)
  -o, --output FORMAT  text (default) or json
  --config FILE        configuration file, as for serve     [MESHGUARD_CONFIG]
  --mode MODE          enforce | audit: how findings are labelled (deny or warn)
  -h, --help           this help

Exit codes: 0 no violations, 1 violations found, 2 unreadable input or bad usage.
`;

export interface CheckFinding {
  readonly file: string;
  readonly line: number;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly rule: string;
  readonly action: 'deny' | 'warn';
  readonly message: string;
  readonly path?: string;
  readonly value?: string;
  readonly fix: string;
}

export interface CheckReport {
  readonly objects: number;
  readonly findings: readonly CheckFinding[];
  readonly errors: readonly { readonly file: string; readonly message: string }[];
}

function metaString(o: KObject, key: 'name' | 'namespace'): string {
  const v = o.metadata?.[key];
  return typeof v === 'string' ? v : '';
}

function toFinding(m: Manifest, object: KObject, namespace: string, r: Result, action: 'deny' | 'warn'): CheckFinding {
  const v = r.violation;
  const base = {
    file: m.file,
    line: m.line,
    kind: typeof object.kind === 'string' ? object.kind : '',
    namespace,
    name: metaString(object, 'name'),
    rule: r.ruleId,
    action,
    message: r.status === 'error' ? `rule could not be evaluated (${r.reason ?? ''})` : (v?.message ?? ''),
    fix: v?.fix ?? ruleById(r.ruleId)?.fix ?? '',
  };
  return { ...base, ...(v?.path !== undefined ? { path: v.path } : {}), ...(v?.value !== undefined ? { value: v.value } : {}) };
}

/** The pure part of check: manifests in, findings out. */
export function checkManifests(manifests: readonly Manifest[], config: Config): CheckFinding[] {
  const state = new StaticClusterState([], config.revisions);
  const findings: CheckFinding[] = [];
  const isNs = (m: Manifest): boolean => m.object.kind === 'Namespace' && (m.object.apiVersion === 'v1' || m.object.apiVersion === undefined);
  // Namespaces first: they are the state the other objects are judged against.
  const ordered = [...manifests.filter(isNs), ...manifests.filter((m) => !isNs(m))];
  for (const m of ordered) {
    const r = runPipeline(m.object, { uid: `check-${m.index}` }, config, state, BUILTIN_RULES);
    const namespace = isNs(m) ? '' : metaString(m.object, 'namespace') || 'default';
    if (isNs(m)) {
      const labels = r.object.metadata?.labels;
      state.put({ name: metaString(r.object, 'name'), labels: typeof labels === 'object' && labels !== null ? labels : {} });
    }
    for (const d of r.validation.denials) findings.push(toFinding(m, r.object, namespace, d, 'deny'));
    for (const w of r.validation.warnings) findings.push(toFinding(m, r.object, namespace, w, 'warn'));
  }
  return findings.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
}

function renderText(report: CheckReport): string {
  const lines: string[] = [];
  for (const e of report.errors) lines.push(`${e.file}: error: ${e.message}`);
  for (const f of report.findings) {
    const obj = `${f.kind} ${f.namespace === '' ? '' : `${f.namespace}/`}${f.name}`;
    const where = f.path === undefined ? '' : ` (at ${f.path}${f.value === undefined ? '' : `: ${JSON.stringify(f.value)}`})`;
    lines.push(`${f.file}:${f.line}: ${obj}: ${f.action === 'deny' ? 'DENY' : 'WARN'} [${f.rule}] ${f.message}${where}`);
    if (f.fix !== '') lines.push(`    fix: ${f.fix}`);
  }
  const n = report.findings.length;
  lines.push(`${report.objects} object(s) checked, ${n} violation(s)${report.errors.length > 0 ? `, ${report.errors.length} input error(s)` : ''}`);
  return `${lines.join('\n')}\n`;
}

export async function runCheck(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      output: { type: 'string', short: 'o', default: 'text' },
      config: { type: 'string' },
      mode: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    io.out(CHECK_HELP);
    return EXIT.OK;
  }
  if (values.filename === undefined || values.filename.length === 0) throw new UsageError('check needs at least one -f <file|dir|->');
  if (values.output !== 'text' && values.output !== 'json') throw new UsageError(`--output must be text or json, got "${values.output}"`);
  const config = configFromFlags(values, io.env, ['config', 'mode']);
  const input = await readInputs(values.filename, io.stdin);
  const report: CheckReport = { objects: input.manifests.length, findings: checkManifests(input.manifests, config), errors: input.errors };
  io.out(values.output === 'json' ? `${JSON.stringify(report, null, 2)}\n` : renderText(report));
  if (input.errors.length > 0) return EXIT.USAGE;
  return report.findings.length > 0 ? EXIT.VIOLATIONS : EXIT.OK;
}
