// PolicyReports from a scan, as a pure plan: the reports the cluster should hold (one per
// namespace with scanned objects, one cluster report for cluster-scoped objects), and the actions
// that make the stored reports equal to them. Reports are replaced whole on every write, never
// appended to, so an entry for an object that was fixed or deleted disappears with the next scan;
// a report whose namespace no longer has scanned objects is deleted. Only reports labelled as
// meshguard's are ever replaced or deleted.
import { whereText, type Finding, type ScanReport } from '../scan/report.ts';

export type ReportFormat = 'wgpolicyk8s' | 'openreports';

export interface ReportKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly plural: string;
  readonly namespaced: boolean;
}

/** wgpolicyk8s.io/v1alpha2 (Kyverno, Kubewarden, Trivy operator, Falco; Policy Reporter) and
 * openreports.io/v1alpha1 (its successor). */
export const REPORT_KINDS: Readonly<Record<ReportFormat, { readonly namespaced: ReportKind; readonly cluster: ReportKind }>> = {
  wgpolicyk8s: {
    namespaced: { group: 'wgpolicyk8s.io', version: 'v1alpha2', kind: 'PolicyReport', plural: 'policyreports', namespaced: true },
    cluster: { group: 'wgpolicyk8s.io', version: 'v1alpha2', kind: 'ClusterPolicyReport', plural: 'clusterpolicyreports', namespaced: false },
  },
  openreports: {
    namespaced: { group: 'openreports.io', version: 'v1alpha1', kind: 'Report', plural: 'reports', namespaced: true },
    cluster: { group: 'openreports.io', version: 'v1alpha1', kind: 'ClusterReport', plural: 'clusterreports', namespaced: false },
  },
};

export const REPORT_NAME = 'meshguard';
export const MANAGED_BY = 'app.kubernetes.io/managed-by';
export const REPORT_LABELS: Readonly<Record<string, string>> = Object.freeze({ [MANAGED_BY]: 'meshguard' });
export const REPORT_SELECTOR = `${MANAGED_BY}=meshguard`;
/** A report object must stay well under etcd's 1.5 MiB: at most this many results (the summary
 * still counts all of them; the annotation says how many were left out). */
export const MAX_RESULTS = 1000;
export const TRUNCATED_ANNOTATION = 'meshguard.dev/results-omitted';

/** Rules whose violation does not by itself let traffic escape the proxy or weaken mTLS. */
const MEDIUM: ReadonlySet<string> = new Set(['control-labels-admin-only', 'restricted-istio-kinds', 'service-entry-wildcard']);

export function severityOf(rule: string): 'high' | 'medium' {
  return MEDIUM.has(rule) ? 'medium' : 'high';
}

export function categoryOf(rule: string): string {
  if (rule.startsWith('namespace-') || rule.startsWith('control-labels')) return 'Istio mesh enrollment';
  if (rule.startsWith('workload-') || rule.startsWith('pod-')) return 'Istio workloads';
  return 'Istio configuration';
}

export interface DesiredReport {
  readonly kind: ReportKind;
  /** '' for the cluster report. */
  readonly namespace: string;
  readonly name: string;
  readonly body: Record<string, unknown>;
}

function resultOf(f: Finding, timestamp: { seconds: number; nanos: number }): Record<string, unknown> {
  const result = f.status === 'error' ? 'error' : f.action === 'deny' ? 'fail' : 'warn';
  return {
    source: 'meshguard',
    policy: 'meshguard',
    rule: f.rule,
    result,
    // Audit mode: reported, not enforced.
    scored: f.action === 'deny',
    severity: severityOf(f.rule),
    category: categoryOf(f.rule),
    message: `${f.message}${whereText(f)}`,
    timestamp,
    resources: [
      {
        apiVersion: f.apiVersion,
        kind: f.kind,
        ...(f.kind !== 'Namespace' && f.namespace !== '' ? { namespace: f.namespace } : {}),
        name: f.name,
        ...(f.uid !== '' ? { uid: f.uid } : {}),
      },
    ],
    properties: {
      action: f.action,
      ...(f.fix !== '' ? { fix: f.fix } : {}),
      ...(f.path !== undefined ? { path: f.path } : {}),
    },
  };
}

/** The reports a scan calls for, in one format. */
export function desiredReports(scan: ScanReport, format: ReportFormat): DesiredReport[] {
  const at = Date.parse(scan.completedAt);
  const timestamp = { seconds: Math.floor(at / 1000), nanos: (at % 1000) * 1_000_000 };
  const byScope = new Map<string, Finding[]>();
  for (const s of scan.scopes) byScope.set(s.namespace, []);
  for (const f of scan.findings) {
    // Namespaces and other cluster-scoped objects go to the cluster report.
    const key = f.kind === 'Namespace' ? '' : f.namespace;
    byScope.set(key, [...(byScope.get(key) ?? []), f]);
  }
  const passed = new Map(scan.scopes.map((s) => [s.namespace, s.passed]));
  const kinds = REPORT_KINDS[format];
  return [...byScope.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([namespace, findings]) => {
      const kind = namespace === '' ? kinds.cluster : kinds.namespaced;
      const results = findings.map((f) => resultOf(f, timestamp));
      const count = (r: string): number => results.filter((x) => x['result'] === r).length;
      const kept = results.slice(0, MAX_RESULTS);
      const body: Record<string, unknown> = {
        apiVersion: `${kind.group}/${kind.version}`,
        kind: kind.kind,
        metadata: {
          name: REPORT_NAME,
          ...(namespace !== '' ? { namespace } : {}),
          labels: { ...REPORT_LABELS },
          ...(kept.length < results.length ? { annotations: { [TRUNCATED_ANNOTATION]: String(results.length - kept.length) } } : {}),
        },
        ...(format === 'openreports' ? { source: 'meshguard' } : {}),
        ...(namespace !== '' ? { scope: { apiVersion: 'v1', kind: 'Namespace', name: namespace } } : {}),
        summary: { pass: passed.get(namespace) ?? 0, fail: count('fail'), warn: count('warn'), error: count('error'), skip: 0 },
        results: kept,
      };
      return { kind, namespace, name: REPORT_NAME, body };
    });
}

/** A report as listed from the API server. */
export interface ExistingReport {
  readonly kind: ReportKind;
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;
  readonly managed: boolean;
}

export type ReportAction =
  | { readonly type: 'create'; readonly report: DesiredReport }
  | { readonly type: 'replace'; readonly report: DesiredReport; readonly resourceVersion: string }
  | { readonly type: 'delete'; readonly existing: ExistingReport };

const keyOf = (kind: ReportKind, namespace: string, name: string): string => `${kind.group}/${kind.kind}/${namespace}/${name}`;

/** Create what is missing, replace what is there (whole), delete meshguard's reports nothing calls for. */
export function planReports(desired: readonly DesiredReport[], existing: readonly ExistingReport[]): ReportAction[] {
  const have = new Map(existing.map((e) => [keyOf(e.kind, e.namespace, e.name), e]));
  const want = new Set(desired.map((d) => keyOf(d.kind, d.namespace, d.name)));
  const actions: ReportAction[] = [];
  for (const d of desired) {
    const e = have.get(keyOf(d.kind, d.namespace, d.name));
    // A report of that name that meshguard did not write is left alone (create reports the conflict).
    actions.push(e === undefined || !e.managed ? { type: 'create', report: d } : { type: 'replace', report: d, resourceVersion: e.resourceVersion });
  }
  for (const e of existing) if (e.managed && !want.has(keyOf(e.kind, e.namespace, e.name))) actions.push({ type: 'delete', existing: e });
  return actions;
}
