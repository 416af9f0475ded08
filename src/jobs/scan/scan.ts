// The cluster scan: read every existing object of every kind the enabled validating rules match
// (derived from the rules' webhook resources, never a fixed list), and judge each one with the
// same rule code admission runs, as if it were created now. Reads go through client-node, in
// pages; a kind that cannot be read (no CRD, forbidden, any API error) becomes one line in the
// report and the scan goes on. The same function backs `meshguard scan` and the periodic scan
// in serve (Prometheus gauges by rule and namespace).
import { ApiException, HttpMethod, KubernetesObjectApi, type KubeConfig, type KubernetesObject, type ResponseContext } from '@kubernetes/client-node';
import type { KObject, UserInfo } from '../../core/request.ts';
import type { Config } from '../../config/types.ts';
import { isClusterScoped, syntheticRequest } from '../../core/admission-chain.ts';
import { reviewValidate, type RuleSet } from '../../core/pipeline.ts';
import { isExempt } from '../../core/match.ts';
import type { Result, ValidatingRule, WebhookResource } from '../../core/types.ts';
import { ALWAYS_EXCLUDED, MESH_CONFIG_NAMESPACE } from '../../policies/webhook-config.ts';
import type { ListWatchLog } from '../../kube/list-watch.ts';
import { inventoryFindings } from './inventory.ts';
import { StaticClusterState, type ClusterState, type NamespaceInfo } from '../../core/cluster-view.ts';
import type { MeshguardException } from '../../core/exception-model.ts';
import { withExceptions } from '../../kube/exception-store.ts';
import { statusCode, apiErrorText } from '../../kube/errors.ts';

export type Placement = NonNullable<WebhookResource['placement']>;

/** One resource to read: a group and resource, the versions to try, and the webhooks that carry it. */
export interface ScanTarget {
  readonly group: string;
  /** Served versions to try, most preferred first (GA before beta before alpha). */
  readonly versions: readonly string[];
  readonly resource: string;
  readonly placements: readonly Placement[];
}

const VERSION = /^v(\d+)(?:(alpha|beta)(\d+))?$/;

/** Kubernetes version priority: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > anything else. */
export function compareVersions(a: string, b: string): number {
  const rank = (v: string): [number, number, number] => {
    const m = VERSION.exec(v);
    if (m === null) return [0, 0, 0];
    const stability = m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1;
    return [stability, Number(m[1]), Number(m[3] ?? 0)];
  };
  const [sa, ma, na] = rank(a);
  const [sb, mb, nb] = rank(b);
  return sb - sa || mb - ma || nb - na || a.localeCompare(b);
}

export function targetName(t: { readonly group: string; readonly resource: string }): string {
  return t.group === '' ? t.resource : `${t.resource}.${t.group}`;
}

/** Every (group, resource) an enabled validating rule registers for; subresources are skipped. */
export function scanTargets(rules: readonly ValidatingRule[], config: Config): ScanTarget[] {
  const merged = new Map<string, { group: string; resource: string; versions: Set<string>; placements: Set<Placement> }>();
  for (const rule of rules) {
    if (config.rules[rule.id]?.enabled === false) continue;
    for (const w of rule.webhook) {
      for (const resource of w.resources) {
        if (resource.includes('/')) continue;
        const key = `${w.apiGroup}/${resource}`;
        const e = merged.get(key) ?? { group: w.apiGroup, resource, versions: new Set<string>(), placements: new Set<Placement>() };
        for (const v of w.apiVersions) e.versions.add(v);
        e.placements.add(w.placement ?? 'default');
        merged.set(key, e);
      }
    }
  }
  return [...merged.values()]
    .map((e) => ({ group: e.group, resource: e.resource, versions: [...e.versions].sort(compareVersions), placements: [...e.placements].sort() }))
    .sort((a, b) => (a.group === '' && a.resource === 'namespaces' ? -1 : b.group === '' && b.resource === 'namespaces' ? 1 : targetName(a).localeCompare(targetName(b))));
}

function metaString(o: KObject, key: 'name' | 'namespace'): string {
  const v = o.metadata?.[key];
  return typeof v === 'string' ? v : '';
}

/**
 * Would the API server send this object to meshguard? The same namespace exclusions as the
 * generated webhook configurations (a Namespace is judged by its own name).
 */
export function inScope(placements: readonly Placement[], object: KObject, config: Config): boolean {
  const ns = object.kind === 'Namespace' ? metaString(object, 'name') : metaString(object, 'namespace');
  const never = (ALWAYS_EXCLUDED as readonly string[]).includes(ns) || ns === config.meshguardNamespace;
  return placements.some((p) => {
    if (p === 'mesh-config') {
      const name = metaString(object, 'name');
      return ns === MESH_CONFIG_NAMESPACE && (name === 'istio' || name.startsWith('istio-'));
    }
    if (never) return false;
    return p === 'all-namespaces' || !isExempt(config, ns);
  });
}

// ---------------------------------------------------------------------------- findings ---

export interface ScanFinding {
  readonly kind: string;
  readonly apiVersion: string;
  /** The namespace the finding belongs to: the object's, or a Namespace's own name; '' for other cluster-scoped objects. */
  readonly namespace: string;
  readonly name: string;
  /** metadata.uid ('' when the object has none). */
  readonly uid: string;
  readonly rule: string;
  /** deny: admission would refuse it now; warn: admission would let it through with a warning (audit mode). */
  readonly action: 'deny' | 'warn';
  /** fail: the rule found a violation; error: the rule could not be evaluated. */
  readonly status: 'fail' | 'error' | 'pass' | 'skip';
  readonly message: string;
  readonly path?: string;
  readonly value?: string;
  readonly fix: string;
}

/**
 * Who the synthetic requests come from. The scan judges what an object is, not who wrote it: rules
 * about who may make a change (control-labels-admin-only) see an administrator, so an admin's
 * meshguard.dev/mode label counts, as it did when the admin set it.
 */
export function scanUser(config: Config): UserInfo {
  return { username: config.adminUsers[0] ?? 'meshguard:scan', groups: [...config.adminGroups] };
}

function finding(object: KObject, r: Result, action: 'deny' | 'warn', rules: RuleSet): ScanFinding {
  const kind = typeof object.kind === 'string' ? object.kind : '';
  const v = r.violation;
  const base = {
    kind,
    apiVersion: typeof object.apiVersion === 'string' ? object.apiVersion : '',
    namespace: kind === 'Namespace' ? metaString(object, 'name') : metaString(object, 'namespace'),
    name: metaString(object, 'name'),
    uid: typeof object.metadata?.uid === 'string' ? object.metadata.uid : '',
    rule: r.ruleId,
    action,
    status: r.status,
    message: r.status === 'error' ? `rule could not be evaluated (${r.reason ?? ''})` : (v?.message ?? ''),
    fix: v?.fix ?? rules.lookup(r.ruleId)?.fix ?? '',
  };
  return { ...base, ...(v?.path !== undefined ? { path: v.path } : {}), ...(v?.value !== undefined ? { value: v.value } : {}) };
}

/** Judge one existing object as a CREATE of it now: validating rules only (it exists already, nothing would mutate it). */
export function evaluateObject(object: KObject, index: number, state: ClusterState, config: Config, rules: RuleSet): ScanFinding[] {
  return judgeObject(object, index, state, config, rules).findings;
}

/** The findings, and how many rules the object passed. */
export function judgeObject(object: KObject, index: number, state: ClusterState, config: Config, rules: RuleSet): { findings: ScanFinding[]; passed: number } {
  const req = syntheticRequest(object, { uid: `scan-${index}`, operation: 'CREATE', userInfo: scanUser(config) });
  const out = reviewValidate(req, config, state, rules);
  // Advisory warnings stand in at admission for what the mesh-wide checks judge here (scan-inventory.ts).
  const warnings = out.warnings.filter((r) => r.violation?.advisory !== true);
  const failed = new Set([...out.denials, ...out.warnings].map((r) => r.ruleId));
  const passed = new Set(out.results.filter((r) => r.status === 'pass' && !failed.has(r.ruleId)).map((r) => r.ruleId)).size;
  return { findings: [...out.denials.map((r) => finding(object, r, 'deny', rules)), ...warnings.map((r) => finding(object, r, 'warn', rules))], passed };
}

export function compareFindings(a: ScanFinding, b: ScanFinding): number {
  return a.namespace.localeCompare(b.namespace) || a.rule.localeCompare(b.rule) || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name) || a.message.localeCompare(b.message);
}

export interface RuleGroup {
  readonly rule: string;
  readonly findings: readonly ScanFinding[];
}

export interface NamespaceGroup {
  /** '' for cluster-scoped objects that are not Namespaces. */
  readonly namespace: string;
  readonly rules: readonly RuleGroup[];
}

/** Findings grouped by namespace, then rule, both sorted. */
export function groupFindings(findings: readonly ScanFinding[]): NamespaceGroup[] {
  const byNs = new Map<string, Map<string, ScanFinding[]>>();
  for (const f of [...findings].sort(compareFindings)) {
    const rules = byNs.get(f.namespace) ?? new Map<string, ScanFinding[]>();
    rules.set(f.rule, [...(rules.get(f.rule) ?? []), f]);
    byNs.set(f.namespace, rules);
  }
  return [...byNs.entries()].map(([namespace, rules]) => ({ namespace, rules: [...rules.entries()].map(([rule, fs]) => ({ rule, findings: fs })) }));
}

export interface ViolationCount {
  readonly rule: string;
  readonly namespace: string;
  readonly count: number;
}

/** Counts by rule and namespace (the meshguard_scan_violations gauge). */
export function violationCounts(findings: readonly ScanFinding[]): ViolationCount[] {
  return groupFindings(findings).flatMap((g) => g.rules.map((r) => ({ rule: r.rule, namespace: g.namespace, count: r.findings.length })));
}

// ------------------------------------------------------------------------------ reading ---

export interface ListResponse {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly items?: readonly unknown[];
  readonly metadata?: { readonly continue?: string };
}

export interface ListRequest {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
  /** Only this namespace (else all). */
  readonly namespace?: string;
  readonly labelSelector?: string;
  readonly limit: number;
  readonly continue?: string;
}

/** One page of a list, as JSON; errors are thrown (client-node ApiException has .code). */
export interface ScanSource {
  list(req: ListRequest): Promise<ListResponse>;
}

/**
 * Raw JSON GETs through client-node's HTTP stack (auth, TLS, proxy, middleware; errors are
 * ApiException with .code). The response is returned as parsed JSON: the generic object API
 * would turn a list into a KubernetesObject and drop metadata.continue.
 */
class RawApi extends KubernetesObjectApi {
  async getJson(path: string, query: Readonly<Record<string, string>>): Promise<ListResponse> {
    const ctx = this.configuration.baseServer.makeRequestContext(path, HttpMethod.GET);
    ctx.setHeaderParam('Accept', 'application/json');
    for (const [k, v] of Object.entries(query)) ctx.setQueryParam(k, v);
    return (await this.requestPromise(ctx)) as unknown as ListResponse;
  }

  protected override async processResponse<T extends KubernetesObject>(response: ResponseContext): Promise<T> {
    const text = await response.body.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    if (response.httpStatusCode >= 200 && response.httpStatusCode <= 299) return body as T;
    throw new ApiException(response.httpStatusCode, 'Unsuccessful HTTP Request', body, response.headers);
  }
}

export function listPath(req: Pick<ListRequest, 'group' | 'version' | 'resource' | 'namespace'>): string {
  const base = req.group === '' ? `/api/${req.version}` : `/apis/${req.group}/${req.version}`;
  const ns = req.namespace === undefined ? '' : `/namespaces/${encodeURIComponent(req.namespace)}`;
  return `${base}${ns}/${req.resource}`;
}

export function kubeScanSource(kc: KubeConfig): ScanSource {
  const api = kc.makeApiClient(RawApi);
  return {
    list: (req) =>
      api.getJson(listPath(req), {
        limit: String(req.limit),
        ...(req.continue !== undefined ? { continue: req.continue } : {}),
        ...(req.labelSelector !== undefined ? { labelSelector: req.labelSelector } : {}),
      }),
  };
}


/** A readable reason: the Status message of an ApiException, or the error message. */

export class NotServed extends Error {
  override name = 'NotServed';
}

/**
 * Every object of a target, page by page. Versions are tried in order; a 404 on the first page
 * means this version is not served. Items get the list's apiVersion and kind (built-in lists
 * leave them out of the items).
 */
export async function listAll(
  source: ScanSource,
  target: Pick<ScanTarget, 'group' | 'versions' | 'resource'>,
  o: { readonly pageSize: number; readonly namespace?: string; readonly labelSelector?: string; readonly onPage?: (n: number) => void },
): Promise<{ version: string; items: KObject[] }> {
  for (const version of target.versions) {
    const items: KObject[] = [];
    let cont: string | undefined;
    let first = true;
    try {
      do {
        const page = await source.list({
          group: target.group,
          version,
          resource: target.resource,
          limit: o.pageSize,
          ...(o.namespace !== undefined ? { namespace: o.namespace } : {}),
          ...(o.labelSelector !== undefined ? { labelSelector: o.labelSelector } : {}),
          ...(cont !== undefined ? { continue: cont } : {}),
        });
        first = false;
        const kind = typeof page.kind === 'string' ? page.kind.replace(/List$/, '') : '';
        for (const raw of page.items ?? []) {
          if (typeof raw !== 'object' || raw === null) continue;
          const item = raw as KObject;
          items.push({ ...item, apiVersion: item.apiVersion ?? page.apiVersion ?? version, kind: item.kind ?? kind });
        }
        o.onPage?.(items.length);
        cont = page.metadata?.continue === '' ? undefined : page.metadata?.continue;
      } while (cont !== undefined);
      return { version, items };
    } catch (err) {
      if (first && statusCode(err) === 404) continue;
      throw err;
    }
  }
  throw new NotServed(`not served by the API server (tried ${target.versions.join(', ')}): its CRD is not installed`);
}

// --------------------------------------------------------------------------------- scan ---

export interface KindReport {
  /** e.g. "peerauthentications.security.istio.io" */
  readonly resource: string;
  readonly version?: string;
  readonly objects: number;
  /** Why this kind could not be read (missing CRD, forbidden, ...). */
  readonly error?: string;
}

export interface ScanReport {
  readonly startedAt: string;
  readonly completedAt: string;
  readonly objects: number;
  readonly kinds: readonly KindReport[];
  /** Sorted by namespace, rule, kind, name. */
  readonly findings: readonly ScanFinding[];
  /** Problems that did not stop the scan but may make it less exact (e.g. revision discovery). */
  readonly notes: readonly string[];
  /** Per report scope (a namespace; '' for cluster-scoped objects, Namespaces included): the
   * objects judged and the (object, rule) pairs that passed. Every scope with objects is listed. */
  readonly scopes: readonly ScanScope[];
}

export interface ScanScope {
  readonly namespace: string;
  readonly objects: number;
  readonly passed: number;
}

export interface ScanProgress {
  readonly kind: string;
  readonly kindIndex: number;
  readonly kinds: number;
  readonly objects: number;
}

export interface ScanOptions {
  readonly pageSize?: number;
  /** Judge only objects in these namespaces (a Namespace by its own name); all when absent. */
  readonly namespaces?: ReadonlySet<string>;
  readonly onProgress?: (p: ScanProgress) => void;
  readonly now?: () => number;
  /** MeshguardExceptions to apply, as admission does (an excepted finding is not reported). */
  readonly exceptions?: (namespace: string) => readonly MeshguardException[];
}

/** Reading the namespaces failed: the cluster cannot be scanned at all. */
export class ScanError extends Error {
  override name = 'ScanError';
}

const NAMESPACES: ScanTarget = { group: '', versions: ['v1'], resource: 'namespaces', placements: [] };
const REVISION_SELECTOR = 'istio.io/rev';

function namespaceInfo(o: KObject): NamespaceInfo {
  const labels = o.metadata?.labels;
  return { name: metaString(o, 'name'), labels: typeof labels === 'object' && labels !== null ? labels : {} };
}

async function discoverRevisions(source: ScanSource, pageSize: number): Promise<string[]> {
  const target = { group: 'admissionregistration.k8s.io', versions: ['v1'], resource: 'mutatingwebhookconfigurations' };
  const { items } = await listAll(source, target, { pageSize, labelSelector: REVISION_SELECTOR });
  return items.flatMap((w) => ['istio.io/rev', 'istio.io/tag'].map((k) => w.metadata?.labels?.[k]).filter((v): v is string => typeof v === 'string' && v !== ''));
}

export async function scanCluster(source: ScanSource, config: Config, rules: RuleSet, o: ScanOptions = {}): Promise<ScanReport> {
  const now = o.now ?? Date.now;
  const startedAt = new Date(now()).toISOString();
  const pageSize = o.pageSize ?? 500;
  const targets = scanTargets(rules.validating, config);
  const progress = (kind: string, kindIndex: number, objects: number): void => o.onProgress?.({ kind, kindIndex, kinds: targets.length, objects });

  let namespaces: KObject[];
  try {
    namespaces = (await listAll(source, NAMESPACES, { pageSize, onPage: (n) => progress('namespaces', 0, n) })).items;
  } catch (err) {
    throw new ScanError(`cannot list namespaces: ${apiErrorText(err)}`);
  }
  const notes: string[] = [];
  const revisions = new Set(config.revisions);
  if (config.cluster.discoverRevisions) {
    try {
      for (const r of await discoverRevisions(source, pageSize)) revisions.add(r);
    } catch (err) {
      notes.push(`Istio revisions could not be discovered (${apiErrorText(err)}); only configured revisions count`);
    }
  }
  const stored = new StaticClusterState(namespaces.map(namespaceInfo), revisions);
  const exceptions = o.exceptions;
  const state: ClusterState = exceptions === undefined ? stored : withExceptions(stored, { forNamespace: exceptions });

  const kinds: KindReport[] = [];
  const findings: ScanFinding[] = [];
  const listedObjects: KObject[] = [];
  const served = new Set<string>();
  const scopes = new Map<string, ScanScope>();
  let objects = 0;
  for (const [i, target] of targets.entries()) {
    const name = targetName(target);
    progress(name, i, 0);
    let listed: { version: string; items: KObject[] };
    try {
      const isNs = target.group === '' && target.resource === 'namespaces';
      const onlyMeshConfig = target.placements.length === 1 && target.placements[0] === 'mesh-config';
      listed = isNs
        ? { version: 'v1', items: namespaces }
        : await listAll(source, target, { pageSize, onPage: (n) => progress(name, i, n), ...(onlyMeshConfig ? { namespace: MESH_CONFIG_NAMESPACE } : {}) });
    } catch (err) {
      kinds.push({ resource: name, objects: 0, error: err instanceof NotServed ? err.message : `cannot list: ${apiErrorText(err)}` });
      continue;
    }
    const wanted = o.namespaces;
    const scoped = listed.items.filter(
      (item) => inScope(target.placements, item, config) && (wanted === undefined || wanted.has(item.kind === 'Namespace' ? metaString(item, 'name') : metaString(item, 'namespace'))),
    );
    kinds.push({ resource: name, version: listed.version, objects: scoped.length });
    served.add(`${target.group}/${target.resource}`);
    listedObjects.push(...scoped);
    for (const item of scoped) {
      const judged = judgeObject(item, objects++, state, config, rules);
      findings.push(...judged.findings);
      const key = isClusterScoped(typeof item.kind === 'string' ? item.kind : '') ? '' : metaString(item, 'namespace');
      const scope = scopes.get(key) ?? { namespace: key, objects: 0, passed: 0 };
      scopes.set(key, { namespace: key, objects: scope.objects + 1, passed: scope.passed + judged.passed });
    }
  }
  // The mesh-wide checks judge the whole inventory: with a namespace filter it is partial.
  if (o.namespaces === undefined) {
    const meshWide = inventoryFindings(listedObjects, (g, r) => served.has(`${g}/${r}`), state, config, rules);
    for (const m of meshWide.findings) {
      const { kind, apiVersion, namespace, name } = m.finding.subject;
      findings.push(finding({ kind, apiVersion, metadata: { name, namespace } }, m.result, m.action, rules));
    }
    notes.push(...meshWide.errors);
  } else {
    notes.push('mesh-wide checks not run: they need every namespace, and the scan was limited to some');
  }
  return {
    startedAt,
    completedAt: new Date(now()).toISOString(),
    objects,
    kinds,
    findings: findings.sort(compareFindings),
    notes,
    scopes: [...scopes.values()].sort((a, b) => a.namespace.localeCompare(b.namespace)),
  };
}

// ------------------------------------------------------------------------ periodic scan ---

export interface ScanMetrics {
  readonly counts: readonly ViolationCount[];
  /** Unix seconds of the completed scan (meshguard_scan_last_completed_timestamp_seconds). */
  readonly completedAtSeconds: number;
  readonly objects: number;
  /** Kinds that could not be read. */
  readonly kindErrors: number;
}

export function scanMetrics(report: ScanReport): ScanMetrics {
  return {
    counts: violationCounts(report.findings),
    completedAtSeconds: Date.parse(report.completedAt) / 1000,
    objects: report.objects,
    kindErrors: report.kinds.filter((k) => k.error !== undefined).length,
  };
}

export interface PeriodicScanOptions {
  readonly config: Config;
  readonly source: ScanSource;
  readonly rules: RuleSet;
  readonly log: ListWatchLog;
  readonly onResult: (m: ScanMetrics, report: ScanReport) => void;
  /** Skip a round when false (e.g. only the reconciler's leader scans). Default: always. */
  readonly shouldRun?: () => boolean;
  /** First scan after this delay (default 10 s, so the server is up first). */
  readonly initialDelayMs?: number;
}

export interface PeriodicScan {
  stop(): Promise<void>;
  /** The most recent completed scan's metrics. */
  last(): ScanMetrics | undefined;
}

/** Scan every config.scan.intervalSeconds; undefined when the interval is 0 (off). */
export function startPeriodicScan(o: PeriodicScanOptions): PeriodicScan | undefined {
  const intervalMs = o.config.scan.intervalSeconds * 1000;
  if (intervalMs === 0) return undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let last: ScanMetrics | undefined;
  const round = async (): Promise<void> => {
    if (o.shouldRun !== undefined && !o.shouldRun()) return;
    const t0 = Date.now();
    try {
      const report = await scanCluster(o.source, o.config, o.rules);
      last = scanMetrics(report);
      o.onResult(last, report);
      o.log.info(
        { objects: report.objects, violations: report.findings.length, kindErrors: last.kindErrors, durationMs: Date.now() - t0 },
        'scan: completed',
      );
      for (const k of report.kinds) if (k.error !== undefined) o.log.warn({ resource: k.resource }, `scan: ${k.error}`);
    } catch (err) {
      o.log.warn({ err: (err as Error).message }, 'scan: failed; the metrics keep the previous result');
    }
  };
  const schedule = (ms: number): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = round().finally(() => schedule(intervalMs));
    }, ms);
    timer.unref();
  };
  schedule(o.initialDelayMs ?? 10_000);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
    last: () => last,
  };
}
