// The cluster scan: read every existing object of every kind the enabled validating rules match
// (targets.ts) and judge each one with the same rule code admission runs, as if it were created
// now (judge.ts). Reads go through the adapter, in pages; a kind that cannot be read (no CRD,
// forbidden, any API error) becomes one line in the report and the scan goes on. The same
// function backs `meshguard scan` and the periodic scan in serve (loop.ts).
import type { KObject } from '../../core/request.ts';
import type { Config } from '../../config/types.ts';
import { isClusterScoped } from '../../core/resources.ts';
import type { RuleSet } from '../../core/rule-set.ts';
import { LABEL_REV, REVISION_WEBHOOK_LABELS } from '../../policies/lib/mesh-enrollment.ts';
import { MESH_CONFIG_NAMESPACE } from '../../policies/webhook-config.ts';
import { StaticClusterView, type ClusterView, type NamespaceInfo } from '../../core/cluster-view.ts';
import type { MeshguardException } from '../../core/exception-model.ts';
import { withExceptions } from '../../kube/exception-store.ts';
import { apiErrorText } from '../../kube/errors.ts';
import { listAll, NotServed, type ScanSource } from './adapter.ts';
import { inventoryFindings } from './inventory.ts';
import { inventoryFinding, judgeObject } from './judge.ts';
import { compareFindings, metaString, scopeOf, type Finding, type KindReport, type ScanReport, type ScanScope } from './report.ts';
import { inScope, onlyMeshConfig, scanTargets, targetName, type ScanTarget } from './targets.ts';

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

function namespaceInfo(namespace: KObject): NamespaceInfo {
  const labels = namespace.metadata?.labels;
  return { name: metaString(namespace, 'name'), labels: typeof labels === 'object' && labels !== null ? labels : {} };
}

async function discoverRevisions(source: ScanSource, pageSize: number): Promise<string[]> {
  const target = { group: 'admissionregistration.k8s.io', versions: ['v1'], resource: 'mutatingwebhookconfigurations' };
  const { items } = await listAll(source, target, { pageSize, labelSelector: LABEL_REV });
  return items.flatMap((w) => REVISION_WEBHOOK_LABELS.map((k) => w.metadata?.labels?.[k]).filter((v): v is string => typeof v === 'string' && v !== ''));
}

/** The cluster state the objects are judged against (namespaces, revisions, exceptions), and
 * notes on what it may miss. */
async function clusterState(
  source: ScanSource,
  namespaces: readonly KObject[],
  config: Config,
  options: Pick<ScanOptions, 'exceptions'> & { readonly pageSize: number },
): Promise<{ state: ClusterView; notes: string[] }> {
  const notes: string[] = [];
  const revisions = new Set(config.revisions);
  if (config.cluster.discoverRevisions) {
    try {
      for (const r of await discoverRevisions(source, options.pageSize)) revisions.add(r);
    } catch (err) {
      notes.push(`Istio revisions could not be discovered (${apiErrorText(err)}); only configured revisions count`);
    }
  }
  const stored = new StaticClusterView(namespaces.map(namespaceInfo), revisions);
  const exceptions = options.exceptions;
  return { state: exceptions === undefined ? stored : withExceptions(stored, { forNamespace: exceptions }), notes };
}

export async function scanCluster(source: ScanSource, config: Config, rules: RuleSet, options: ScanOptions = {}): Promise<ScanReport> {
  const now = options.now ?? Date.now;
  const startedAt = new Date(now()).toISOString();
  const pageSize = options.pageSize ?? 500;
  const targets = scanTargets(rules.validating, config);
  const progress = (kind: string, kindIndex: number, objects: number): void => options.onProgress?.({ kind, kindIndex, kinds: targets.length, objects });

  let namespaces: KObject[];
  try {
    namespaces = (await listAll(source, NAMESPACES, { pageSize, onPage: (n) => progress('namespaces', 0, n) })).items;
  } catch (err) {
    throw new ScanError(`cannot list namespaces: ${apiErrorText(err)}`);
  }
  const { state, notes } = await clusterState(source, namespaces, config, { pageSize, ...(options.exceptions !== undefined ? { exceptions: options.exceptions } : {}) });

  const kinds: KindReport[] = [];
  const findings: Finding[] = [];
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
      listed = isNs
        ? { version: 'v1', items: namespaces }
        : await listAll(source, target, { pageSize, onPage: (n) => progress(name, i, n), ...(onlyMeshConfig(target) ? { namespace: MESH_CONFIG_NAMESPACE } : {}) });
    } catch (err) {
      kinds.push({ resource: name, objects: 0, error: err instanceof NotServed ? err.message : `cannot list: ${apiErrorText(err)}` });
      continue;
    }
    const wanted = options.namespaces;
    const scoped = listed.items.filter((item) => inScope(target.placements, item, config) && (wanted === undefined || wanted.has(scopeOf(item))));
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
  if (options.namespaces === undefined) {
    const meshWide = inventoryFindings(listedObjects, (g, r) => served.has(`${g}/${r}`), state, config, rules);
    findings.push(...meshWide.findings.map((m) => inventoryFinding(m, rules)));
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
