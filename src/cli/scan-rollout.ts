// What `meshguard scan` adds for rolling out (docs/install.md, "Rolling out"): per namespace, what
// enforce would block, and the cluster's MeshguardExceptions, active and expired. Kept apart from
// the scan's own report formats.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Finding } from '../jobs/scan/report.ts';
import type { Config } from '../config/types.ts';
import { ruleMode } from '../core/decide.ts';
import { decodeException, EXCEPTION_GROUP, EXCEPTION_PLURAL, EXCEPTION_VERSION, isExpired, type Decoded, type MeshguardException } from '../core/exception-model.ts';

export interface WouldBlock {
  readonly namespace: string;
  /** Objects enforce would deny (a finding of a rule not pinned to audit). */
  readonly objects: number;
  readonly violations: number;
  /** Findings admitted today only because the namespace (or meshguard) is in audit mode. */
  readonly auditedToday: number;
}

/** Per namespace, what switching it to enforce would deny (exceptions already applied by the scan). */
export function wouldBlock(findings: readonly Finding[], config: Config): WouldBlock[] {
  const by = new Map<string, { objects: Set<string>; violations: number; audited: number }>();
  for (const f of findings) {
    if (ruleMode(config, f.rule, 'enforce') !== 'enforce') continue;
    const e = by.get(f.namespace) ?? { objects: new Set<string>(), violations: 0, audited: 0 };
    e.objects.add(`${f.kind}/${f.name}`);
    e.violations++;
    if (f.action === 'warn') e.audited++;
    by.set(f.namespace, e);
  }
  return [...by.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([namespace, e]) => ({ namespace, objects: e.objects.size, violations: e.violations, auditedToday: e.audited }));
}

export function renderWouldBlock(rows: readonly WouldBlock[]): string {
  if (rows.length === 0) return 'If enforced: nothing would be denied.\n';
  const lines = ['If enforced (per namespace, what admission would deny):'];
  for (const r of rows) {
    const where = r.namespace === '' ? '(cluster-scoped)' : r.namespace;
    const today = r.auditedToday === r.violations ? 'all admitted today (audit)' : r.auditedToday === 0 ? 'all denied today' : `${r.auditedToday} admitted today (audit)`;
    lines.push(`  ${where}: ${r.objects} object${r.objects === 1 ? '' : 's'} would be denied (${r.violations} violation${r.violations === 1 ? '' : 's'}; ${today})`);
  }
  return `${lines.join('\n')}\n`;
}

export interface ListedExceptions {
  readonly decoded: readonly Decoded[];
  /** Why they could not be listed (the CRD not installed, forbidden). */
  readonly error?: string;
}

export async function listExceptions(kc: KubeConfig, ruleIds: readonly string[]): Promise<ListedExceptions> {
  try {
    const api = kc.makeApiClient(CustomObjectsApi);
    const list = (await api.listClusterCustomObject({ group: EXCEPTION_GROUP, version: EXCEPTION_VERSION, plural: EXCEPTION_PLURAL })) as { items?: unknown[] };
    return { decoded: (list.items ?? []).map((o) => decodeException(o, ruleIds)) };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return { decoded: [], error: code === 404 ? 'the MeshguardException CRD is not installed' : `cannot list MeshguardExceptions (${String(code ?? (err as Error).message)})` };
  }
}

/** The active ones, for the scan to apply, by namespace. */
export function activeByNamespace(l: ListedExceptions, nowMs: number): (namespace: string) => readonly MeshguardException[] {
  const m = new Map<string, MeshguardException[]>();
  for (const d of l.decoded) if ('exception' in d && !isExpired(d.exception, nowMs)) m.set(d.exception.namespace, [...(m.get(d.exception.namespace) ?? []), d.exception]);
  return (ns) => m.get(ns) ?? [];
}

export function renderExceptions(l: ListedExceptions, nowMs: number): string {
  if (l.error !== undefined) return `MeshguardExceptions: not read: ${l.error}\n`;
  const ok = l.decoded.filter((d): d is { exception: MeshguardException } => 'exception' in d).map((d) => d.exception);
  const bad = l.decoded.filter((d): d is { error: string } => 'error' in d);
  const active = ok.filter((e) => !isExpired(e, nowMs));
  const expired = ok.filter((e) => isExpired(e, nowMs));
  const lines = [`MeshguardExceptions: ${active.length} active, ${expired.length} expired${bad.length > 0 ? `, ${bad.length} malformed (never applied)` : ''}`];
  const row = (state: string, e: MeshguardException): string => {
    const what = [...e.names, ...(e.selector !== undefined ? ['(selector)'] : [])].join(',');
    const rules = e.rules.map((r) => (r.values === undefined ? r.id : `${r.id}=${r.values.join('|')}`)).join(', ');
    return `  ${state} ${e.namespace}/${e.name}: ${e.kinds.map((k) => (k.group === '' ? k.kind : `${k.group}/${k.kind}`)).join(',')} ${what} from ${rules}; ${state === 'ACTIVE ' ? 'expires' : 'expired'} ${e.expires}; reason: ${e.reason}`;
  };
  for (const e of active) lines.push(row('ACTIVE ', e));
  for (const e of expired) lines.push(row('EXPIRED', e));
  for (const b of bad) lines.push(`  MALFORMED ${b.error}`);
  return `${lines.join('\n')}\n`;
}
