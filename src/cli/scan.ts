// meshguard scan: every existing object in the cluster that violates the enabled rules, judged by
// the same rule code as admission, grouped by namespace and rule, as text or JSON.
import { parseArgs } from 'node:util';
import { loadKubeConfig } from '../kube/client.ts';
import { scanCluster, ScanError, type ScanProgress } from '../jobs/scan/scan.ts';
import { groupFindings, whereText, type Finding, type ScanReport } from '../jobs/scan/report.ts';
import { kubeScanSource } from '../jobs/scan/adapter.ts';
import { BUILTIN_RULES, RULE_IDS } from '../policies/registry.ts';
import { activeByNamespace, listExceptions, renderExceptions, renderWouldBlock, wouldBlock } from './scan-rollout.ts';
import { EXIT, UsageError, processIo, type Io } from './args.ts';
import { configFromFlags } from '../serve/flags.ts';
import { kubeReportClient } from '../jobs/reports/adapter.ts';
import type { ReportFormat } from '../jobs/reports/plan.ts';
import { writeReports } from '../jobs/reports/loop.ts';

export const SCAN_HELP = `Usage: meshguard scan [flags]

Reads every existing object of the kinds the enabled rules match and reports those that violate
them, judged by the same rules as the webhook (as if each object were created now), grouped by
namespace and rule. Kinds that cannot be read (CRD not installed, forbidden) are listed and the
scan goes on.

Flags:
  --kubeconfig FILE    cluster to scan (default: $KUBECONFIG or ~/.kube/config) [MESHGUARD_KUBECONFIG]
  --in-cluster         use the pod's service account                         [MESHGUARD_IN_CLUSTER]
  -o, --output FORMAT  text (default) or json
  --config FILE        configuration file, as for serve                     [MESHGUARD_CONFIG]
  --mode MODE          enforce | audit: how findings are labelled (deny or warn)
  --page-size N        objects per list request (default 500)
  --namespace NS       only objects in this namespace (a Namespace by its name; repeatable)
  --rule ID            only this rule (repeatable; docs/rules.md lists the ids)
  --policy-reports     also write the findings as wgpolicyk8s.io/v1alpha2 PolicyReports (one
                       per namespace) and a ClusterPolicyReport named meshguard, replacing
                       the previous ones (needs their CRDs; the chart can install them)
  --open-reports       the same as openreports.io/v1alpha1 Reports and a ClusterReport
  -h, --help           this help

A progress line is shown on stderr when stderr is a terminal.
Exit codes: 0 no violations, 1 violations found, 2 bad usage, configuration, the cluster
cannot be read at all, or requested reports could not be written.
`;

export interface ScanIo extends Io {
  /** Show the progress line (default: stderr is a terminal, for the process's own stderr). */
  readonly progress?: boolean;
}

function subject(f: Finding): string {
  return f.kind === 'Namespace' || f.namespace === '' ? `${f.kind} ${f.name}` : `${f.kind} ${f.namespace}/${f.name}`;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The text report: one block per namespace, one sub-block per rule, then unreadable kinds and a summary. */
export function renderScanText(report: ScanReport, extra = ''): string {
  const lines: string[] = [];
  const groups = groupFindings(report.findings);
  for (const g of groups) {
    lines.push(g.namespace === '' ? 'Cluster-scoped objects' : `Namespace ${g.namespace}`);
    for (const r of g.rules) {
      lines.push(`  [${r.rule}] ${plural(r.findings.length, 'violation')}`);
      for (const f of r.findings) {
        lines.push(`    ${f.action === 'deny' ? 'DENY' : 'WARN'} ${subject(f)}: ${f.message}${whereText(f)}`);
        if (f.fix !== '') lines.push(`         fix: ${f.fix}`);
      }
    }
    lines.push('');
  }
  const unreadable = report.kinds.filter((k) => k.error !== undefined);
  if (unreadable.length > 0) {
    lines.push('Not scanned:');
    for (const k of unreadable) lines.push(`  ${k.resource}: ${k.error ?? ''}`);
    lines.push('');
  }
  for (const n of report.notes) lines.push(`note: ${n}`);
  // Sections added by the caller (scan-rollout.ts: what enforce would block, exceptions), before the summary.
  if (extra !== '') lines.push(extra.trimEnd(), '');
  const rules = new Set(report.findings.map((f) => f.rule)).size;
  const read = report.kinds.length - unreadable.length;
  const summary =
    report.findings.length === 0
      ? 'no violations'
      : `${plural(report.findings.length, 'violation')} in ${plural(groups.length, 'namespace')} (${plural(rules, 'rule')})`;
  lines.push(`${summary}; ${plural(report.objects, 'object')} in ${plural(read, 'kind')} scanned${unreadable.length > 0 ? `, ${plural(unreadable.length, 'kind')} not readable` : ''}`);
  return `${lines.join('\n')}\n`;
}

/** The JSON report: the raw report plus counts by namespace and rule. */
export function renderScanJson(report: ScanReport): string {
  const byNamespace: Record<string, Record<string, number>> = {};
  for (const g of groupFindings(report.findings)) byNamespace[g.namespace] = Object.fromEntries(g.rules.map((r) => [r.rule, r.findings.length]));
  const out = {
    startedAt: report.startedAt,
    completedAt: report.completedAt,
    objects: report.objects,
    violations: report.findings.length,
    byNamespace,
    kinds: report.kinds,
    notes: report.notes,
    findings: report.findings,
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}

/** A one-line progress indicator, rewritten in place at most every 100 ms. */
export function progressLine(write: (s: string) => void, now: () => number = Date.now): { update(p: ScanProgress): void; done(): void } {
  let lastAt = 0;
  let shown = false;
  return {
    update(p) {
      const t = now();
      if (t - lastAt < 100) return;
      lastAt = t;
      shown = true;
      write(`\r\x1b[Kscanning ${p.kind} (kind ${p.kindIndex + 1}/${p.kinds}): ${p.objects} objects`);
    },
    done() {
      if (shown) write('\r\x1b[K');
    },
  };
}

function pageSize(raw: string | undefined): number {
  if (raw === undefined) return 500;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new UsageError(`--page-size must be an integer from 1 to 10000, got "${raw}"`);
  return n;
}

export async function runScan(argv: readonly string[], io: ScanIo): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      kubeconfig: { type: 'string' },
      'in-cluster': { type: 'boolean' },
      output: { type: 'string', short: 'o', default: 'text' },
      config: { type: 'string' },
      mode: { type: 'string' },
      'page-size': { type: 'string' },
      namespace: { type: 'string', multiple: true },
      rule: { type: 'string', multiple: true },
      'policy-reports': { type: 'boolean' },
      'open-reports': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) {
    io.out(SCAN_HELP);
    return EXIT.OK;
  }
  if (values.output !== 'text' && values.output !== 'json') throw new UsageError(`--output must be text or json, got "${values.output}"`);
  const size = pageSize(values['page-size']);
  const onlyRules = values.rule ?? [];
  for (const id of onlyRules) if (!BUILTIN_RULES.validating.some((r) => r.id === id)) throw new UsageError(`--rule ${id}: no such validating rule (docs/rules.md lists them)`);
  const onlyNamespaces = values.namespace ?? [];
  if ((onlyRules.length > 0 || onlyNamespaces.length > 0) && (values['policy-reports'] === true || values['open-reports'] === true)) {
    throw new UsageError('--namespace and --rule narrow the output; reports are written from a full scan (they replace every namespace\'s report): drop one or the other');
  }
  const rules = onlyRules.length === 0 ? BUILTIN_RULES : BUILTIN_RULES.withValidating(BUILTIN_RULES.validating.filter((r) => onlyRules.includes(r.id)));
  const config = configFromFlags(values, io.env, ['config', 'mode', 'kubeconfig', 'in-cluster']);
  let kc;
  try {
    kc = loadKubeConfig({ kubeconfig: config.cluster.kubeconfig, inCluster: config.cluster.inCluster });
  } catch (err) {
    throw new UsageError(`cannot load the kubeconfig: ${(err as Error).message}`);
  }
  if (kc.getCurrentCluster() === null) throw new UsageError('no cluster to scan: pass --kubeconfig FILE or --in-cluster, or set KUBECONFIG');

  const showProgress = io.progress ?? (io.err === processIo.err && process.stderr.isTTY === true);
  const progress = showProgress ? progressLine(io.err) : undefined;
  let report: ScanReport;
  // MeshguardExceptions: applied as admission applies them, and listed (active and expired).
  const nowMs = Date.now();
  const exceptions = await listExceptions(kc, RULE_IDS);
  try {
    report = await scanCluster(kubeScanSource(kc), config, rules, {
      pageSize: size,
      exceptions: activeByNamespace(exceptions, nowMs),
      ...(onlyNamespaces.length > 0 ? { namespaces: new Set(onlyNamespaces) } : {}),
      ...(progress !== undefined ? { onProgress: (p: ScanProgress) => progress.update(p) } : {}),
    });
  } catch (err) {
    progress?.done();
    if (err instanceof ScanError) {
      io.err(`meshguard: ${err.message}\n`);
      return EXIT.USAGE;
    }
    throw err;
  }
  progress?.done();
  io.out(values.output === 'json' ? renderScanJson(report) : renderScanText(report, `${renderWouldBlock(wouldBlock(report.findings, config))}${renderExceptions(exceptions, nowMs)}`));
  const formats: ReportFormat[] = [...(values['policy-reports'] === true ? (['wgpolicyk8s'] as const) : []), ...(values['open-reports'] === true ? (['openreports'] as const) : [])];
  if (formats.length > 0) {
    const w = await writeReports(kubeReportClient(kc), report, formats);
    io.err(`meshguard: reports: ${w.created} created, ${w.replaced} replaced, ${w.deleted} deleted\n`);
    for (const line of [...w.skipped.map((x) => `not written: ${x}`), ...w.errors]) io.err(`meshguard: reports: ${line}\n`);
    if (w.errors.length > 0 || w.skipped.length > 0) return EXIT.USAGE;
  }
  return report.findings.length > 0 ? EXIT.VIOLATIONS : EXIT.OK;
}
