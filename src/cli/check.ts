// meshguard check: the admission pipeline over manifests, offline. Namespaces in the input are
// the cluster state (as meshguard's mutation would store them); namespaces that are not in the
// input come from --namespace, or are assumed meshed (with a note), or denied with
// --unknown-namespaces deny.
import { parseArgs } from 'node:util';
import type { KObject } from '../core/request.ts';
import { StaticClusterView } from '../core/cluster-view.ts';
import type { Config } from '../config/types.ts';
import { runPipeline } from '../core/admission-chain.ts';
import type { Result } from '../core/types.ts';
import { findingOf, metaString, whereText, type Finding } from '../jobs/scan/report.ts';
import { LABEL_DATAPLANE, LABEL_INJECTION, LABEL_REV } from '../policies/lib/mesh-enrollment.ts';
import { PROXY, STATUS } from '../policies/lib/injector.ts';
import { BUILTIN_RULES } from '../policies/registry.ts';
import { EXIT, UsageError, type Io } from './args.ts';
import { renderGithub, renderJunit, renderSarif } from './check-formats.ts';
import { readInputs, type Manifest } from './manifests.ts';
import { configFromFlags } from '../serve/flags.ts';

export const CHECK_HELP = `Usage: meshguard check -f <file|dir|-> [-f ...] [flags]

Evaluates Kubernetes manifests (multi-document YAML or JSON, directories recursively, - for
stdin) with the same rules as the webhook, as the apiserver would admit them now.

Flags:
  -f, --filename PATH      manifest file, directory or - (repeatable)
  -o, --output FORMAT      text (default), json, sarif (SARIF 2.1.0, for code scanning),
                           junit (JUnit XML) or github (workflow command annotations)
  --exclude GLOB           skip files whose path matches (repeatable; * and ** and ?)
  --namespace NAME=LABELS  the labels of a namespace that is not in the input, e.g.
                           --namespace team-a=istio-injection=enabled,team=a (repeatable;
                           NAME alone: a namespace without labels)
  --unknown-namespaces M   meshed (default): a namespace neither in the input nor given
                           with --namespace is assumed enrolled as meshguard would enrol it
                           (injection.mode), with a note; deny: judged as unknown
  --revision REV           an installed Istio revision or tag (repeatable; adds to the
                           configuration's revisions)
  --config FILE            configuration file, as for serve     [MESHGUARD_CONFIG]
  --mode MODE              enforce | audit: how findings are labelled (deny or warn)
  -h, --help               this help

Offline, a Pod without Istio's sidecar (no ${STATUS} annotation and no ${PROXY}
container) is not reported by pod-sidecar-present: the sidecar is added at admission, and
admission-time injection is not judged offline. Pods that carry the sidecar are judged.

A Helm chart (Chart.yaml) or kustomize (kustomization.yaml) directory is not read: render it
and check the output, e.g.
  helm template my-release ./chart | meshguard check -f -
  kustomize build ./overlay | meshguard check -f -
Such a directory is an input error (exit 2) that says so.

Exit codes: 0 no violations, 1 violations found, 2 unreadable input (including a chart or
kustomize directory) or bad usage.
`;

/** Where in the input a finding is. */
export interface ManifestLocation {
  readonly file: string;
  /** Line and column of the field (or its nearest present parent; the document's first line
   * when the finding names no field). */
  readonly line: number;
  readonly column: number;
}

/** A finding (the same value a cluster scan reports) at its place in the input. */
export type CheckFinding = ManifestLocation & Finding;

export interface CheckReport {
  readonly objects: number;
  readonly findings: readonly CheckFinding[];
  readonly errors: readonly { readonly file: string; readonly message: string }[];
  /** What the offline check assumed or did not judge. */
  readonly notes: readonly string[];
  /** Every checked object, for formats that list passing ones (junit). */
  readonly checked?: readonly { readonly file: string; readonly line: number; readonly subject: string }[];
}

export interface CheckOptions {
  /** Namespaces that are not in the input, with their labels. */
  readonly namespaces?: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** 'meshed' (default): namespaces known from nowhere are assumed enrolled; 'deny': unknown. */
  readonly unknownNamespaces?: 'meshed' | 'deny';
  /** Installed revisions beyond config.revisions. */
  readonly revisions?: readonly string[];
  /** 'skip' (default): pod-sidecar-present does not judge Pods without Istio's sidecar (it is
   * added at admission); 'judge': as admission judges a Pod that arrives uninjected. */
  readonly uninjectedPods?: 'skip' | 'judge';
}

function toFinding(m: Manifest, object: KObject, namespace: string, r: Result, action: 'deny' | 'warn'): CheckFinding {
  const at = m.locate?.(r.violation?.path) ?? { line: m.line, column: 1 };
  return { file: m.file, line: at.line, column: at.column, ...findingOf(object, namespace, r, action, BUILTIN_RULES.lookup) };
}

/** A finding in the JSON output: its place, then the fields check has always published (a
 * scan's object identity and rule status left out). */
function jsonFinding(f: CheckFinding): Record<string, unknown> {
  const { file, line, column, kind, namespace, name, rule, action, message, fix, path, value } = f;
  return { file, line, column, kind, namespace, name, rule, action, message, fix, ...(path !== undefined ? { path } : {}), ...(value !== undefined ? { value } : {}) };
}

/** The labels meshguard's mutation gives a new namespace (injection.mode). */
export function enrollmentLabels(config: Config): Record<string, string> {
  if (config.injection.mode === 'ambient') return { [LABEL_DATAPLANE]: 'ambient' };
  if (config.injection.mode === 'revision' && config.injection.revision !== '') return { [LABEL_REV]: config.injection.revision };
  return { [LABEL_INJECTION]: 'enabled' };
}

/** A Pod as written in Git, before admission: neither Istio's status annotation nor a proxy. */
export function isUninjectedPod(object: KObject): boolean {
  if (object.kind !== 'Pod' || (object.apiVersion !== 'v1' && object.apiVersion !== undefined)) return false;
  const status = object.metadata?.annotations?.[STATUS];
  if (typeof status === 'string' && status !== '') return false;
  const spec = (object as { spec?: { containers?: unknown; initContainers?: unknown } }).spec;
  const named = (list: unknown): boolean => Array.isArray(list) && list.some((c) => typeof c === 'object' && c !== null && (c as { name?: unknown }).name === PROXY);
  return !named(spec?.containers) && !named(spec?.initContainers);
}

const SIDECAR_RULE = 'pod-sidecar-present';

/** The pure part of check: manifests in, findings out. */
export function checkManifests(manifests: readonly Manifest[], config: Config, options: CheckOptions = {}): CheckFinding[] {
  return checkOffline(manifests, config, options).findings;
}

/** Findings, and notes on what was assumed or not judged offline. */
export function checkOffline(manifests: readonly Manifest[], config: Config, options: CheckOptions = {}): { findings: CheckFinding[]; notes: string[] } {
  const revisions = [...config.revisions, ...(options.revisions ?? []), ...(config.injection.mode === 'revision' && config.injection.revision !== '' ? [config.injection.revision] : [])];
  const state = new StaticClusterView([], revisions);
  const findings: CheckFinding[] = [];
  const notes: string[] = [];
  const isNs = (m: Manifest): boolean => m.object.kind === 'Namespace' && (m.object.apiVersion === 'v1' || m.object.apiVersion === undefined);
  // Namespaces first: they are the state the other objects are judged against; given ones
  // (--namespace) next; then, by default, every other namespace the input uses, as enrolled.
  const ordered = [...manifests.filter(isNs), ...manifests.filter((m) => !isNs(m))];
  const inInput = new Set(manifests.filter(isNs).map((m) => metaString(m.object, 'name')));
  for (const [name, labels] of options.namespaces ?? []) if (!inInput.has(name)) state.put({ name, labels: { ...labels } });
  if ((options.unknownNamespaces ?? 'meshed') === 'meshed') {
    const assumed = new Set<string>();
    for (const m of manifests) {
      if (isNs(m)) continue;
      const ns = metaString(m.object, 'namespace') || 'default';
      if (!inInput.has(ns) && options.namespaces?.has(ns) !== true) assumed.add(ns);
    }
    const labels = enrollmentLabels(config);
    for (const name of assumed) state.put({ name, labels });
    if (assumed.size > 0) {
      const list = [...assumed].sort();
      const shown = list.length > 10 ? `${list.slice(0, 10).join(', ')} and ${list.length - 10} more` : list.join(', ');
      notes.push(
        `${list.length} namespace(s) not in the input were assumed meshed (${Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',')}): ${shown}; give their labels with --namespace NAME=LABELS, or judge them as unknown with --unknown-namespaces deny`,
      );
    }
  }
  let notInjected = 0;
  for (const m of ordered) {
    const r = runPipeline(m.object, { uid: `check-${m.index}` }, config, state, BUILTIN_RULES);
    const namespace = isNs(m) ? '' : metaString(m.object, 'namespace') || 'default';
    if (isNs(m)) {
      const labels = r.object.metadata?.labels;
      state.put({ name: metaString(r.object, 'name'), labels: typeof labels === 'object' && labels !== null ? labels : {} });
    }
    // The sidecar is added at admission, not in Git: an uninjected Pod manifest is not judged.
    const skipSidecar = options.uninjectedPods !== 'judge' && isUninjectedPod(m.object);
    let skipped = false;
    const keep = (x: Result): boolean => {
      if (skipSidecar && x.ruleId === SIDECAR_RULE) {
        skipped = true;
        return false;
      }
      return true;
    };
    for (const d of r.validation.denials) if (keep(d)) findings.push(toFinding(m, r.object, namespace, d, 'deny'));
    for (const w of r.validation.warnings) if (keep(w)) findings.push(toFinding(m, r.object, namespace, w, 'warn'));
    if (skipped) notInjected++;
  }
  if (notInjected > 0) {
    notes.push(`${notInjected} Pod(s) without Istio's sidecar were not judged by ${SIDECAR_RULE}: admission-time injection is not judged offline (the injector adds the sidecar when the Pod is created)`);
  }
  findings.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
  return { findings, notes };
}

function renderText(report: CheckReport): string {
  const lines: string[] = [];
  for (const e of report.errors) lines.push(`${e.file}: error: ${e.message}`);
  for (const f of report.findings) {
    const obj = `${f.kind} ${f.namespace === '' ? '' : `${f.namespace}/`}${f.name}`;
    lines.push(`${f.file}:${f.line}:${f.column}: ${obj}: ${f.action === 'deny' ? 'DENY' : 'WARN'} [${f.rule}] ${f.message}${whereText(f)}`);
    if (f.fix !== '') lines.push(`    fix: ${f.fix}`);
  }
  for (const n of report.notes) lines.push(`note: ${n}`);
  const n = report.findings.length;
  lines.push(`${report.objects} object(s) checked, ${n} violation(s)${report.errors.length > 0 ? `, ${report.errors.length} input error(s)` : ''}`);
  return `${lines.join('\n')}\n`;
}

const FORMATS = ['text', 'json', 'sarif', 'junit', 'github'] as const;
type Format = (typeof FORMATS)[number];

/** --namespace NAME=k=v,k2=v2 (NAME alone: no labels). */
export function parseNamespaceFlag(raw: string): [string, Record<string, string>] {
  const eq = raw.indexOf('=');
  const name = eq < 0 ? raw : raw.slice(0, eq);
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) throw new UsageError(`--namespace "${raw}": "${name}" is not a namespace name (NAME=key=value,key2=value2)`);
  const labels: Record<string, string> = {};
  const rest = eq < 0 ? '' : raw.slice(eq + 1);
  for (const pair of rest === '' ? [] : rest.split(',')) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new UsageError(`--namespace "${raw}": "${pair}" is not key=value`);
    labels[pair.slice(0, i)] = pair.slice(i + 1);
  }
  return [name, labels];
}

export async function runCheck(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      filename: { type: 'string', short: 'f', multiple: true },
      output: { type: 'string', short: 'o', default: 'text' },
      exclude: { type: 'string', multiple: true },
      namespace: { type: 'string', multiple: true },
      'unknown-namespaces': { type: 'string', default: 'meshed' },
      revision: { type: 'string', multiple: true },
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
  const output = values.output as Format;
  if (!FORMATS.includes(output)) throw new UsageError(`--output must be one of ${FORMATS.join(', ')}, got "${values.output}"`);
  const unknown = values['unknown-namespaces'];
  if (unknown !== 'meshed' && unknown !== 'deny') throw new UsageError(`--unknown-namespaces must be meshed or deny, got "${unknown}"`);
  for (const r of values.revision ?? []) if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(r)) throw new UsageError(`--revision "${r}" is not a revision name`);
  const namespaces = new Map((values.namespace ?? []).map(parseNamespaceFlag));
  const config = configFromFlags(values, io.env, ['config', 'mode']);
  const input = await readInputs(values.filename, io.stdin, { exclude: values.exclude ?? [] });
  const { findings, notes } = checkOffline(input.manifests, config, { namespaces, unknownNamespaces: unknown, revisions: values.revision ?? [] });
  const report: CheckReport = {
    objects: input.manifests.length,
    findings,
    errors: input.errors,
    notes,
    checked: input.manifests.map((m) => ({ file: m.file, line: m.line, subject: `${typeof m.object.kind === 'string' ? m.object.kind : '?'} ${metaString(m.object, 'namespace') === '' ? '' : `${metaString(m.object, 'namespace')}/`}${metaString(m.object, 'name')}` })),
  };
  const render: Record<Format, () => string> = {
    text: () => renderText(report),
    json: () => `${JSON.stringify({ objects: report.objects, findings: report.findings.map(jsonFinding), errors: report.errors, notes: report.notes }, null, 2)}\n`,
    sarif: () => renderSarif(report),
    junit: () => renderJunit(report),
    github: () => renderGithub(report),
  };
  io.out(render[output]());
  if (input.errors.length > 0) return EXIT.USAGE;
  return report.findings.length > 0 ? EXIT.VIOLATIONS : EXIT.OK;
}
