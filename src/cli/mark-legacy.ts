// meshguard mark-legacy: the one-time marking of an audit-first rollout (docs/install.md, "Rolling
// out"). Every namespace that exists now, is not exempt and carries no meshguard.dev/mode label
// gets meshguard.dev/mode=audit, so meshguard in enforce mode judges it in audit (allowed, with
// warnings and audit records) until an admin enrols it by removing the label (or setting it to
// enforce). The label is admin-only (control-labels-admin-only) and decide reads it
// (core/decide.ts): this command only writes it, as an admin. Dry run unless --apply.
import { parseArgs } from 'node:util';
import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Namespace } from '@kubernetes/client-node';
import { loadKubeConfig, pageParams } from '../kube/client.ts';
import type { Config } from '../config/types.ts';
import { MODE_LABEL } from '../core/decide.ts';
import { isExempt } from '../core/match.ts';
import { EXIT, UsageError, type Io } from './args.ts';
import { configFromFlags } from '../serve/flags.ts';

export const MARK_LEGACY_HELP = `Usage: meshguard mark-legacy [flags]

Marks every existing namespace that is not exempt and has no ${MODE_LABEL} label with
${MODE_LABEL}=audit: meshguard judges it in audit mode (allowed, with warnings and audit records)
until an admin enrols it (kubectl label namespace NAME ${MODE_LABEL}-). Run it once, as a
meshguard admin (the label is admin-only), right after installing. Without --apply it only
prints what it would mark.

Flags:
  --kubeconfig FILE    cluster (default: $KUBECONFIG or ~/.kube/config)   [MESHGUARD_KUBECONFIG]
  --in-cluster         use the pod's service account                      [MESHGUARD_IN_CLUSTER]
  --config FILE        configuration file (exemptNamespaces, meshguardNamespace) [MESHGUARD_CONFIG]
  --apply              label the namespaces (default: dry run)
  -h, --help           this help
`;

export interface LegacyPlan {
  readonly mark: readonly string[];
  readonly skip: readonly { readonly name: string; readonly why: string }[];
}

/** Which namespaces get the audit marking. Pure. */
export function legacyPlan(namespaces: readonly { readonly name: string; readonly labels: Readonly<Record<string, string>> }[], config: Config): LegacyPlan {
  const mark: string[] = [];
  const skip: { name: string; why: string }[] = [];
  for (const ns of [...namespaces].sort((a, b) => a.name.localeCompare(b.name))) {
    if (isExempt(config, ns.name)) skip.push({ name: ns.name, why: 'exempt' });
    else if (ns.labels[MODE_LABEL] !== undefined) skip.push({ name: ns.name, why: `already ${MODE_LABEL}=${ns.labels[MODE_LABEL]}` });
    else mark.push(ns.name);
  }
  return { mark, skip };
}

export async function runMarkLegacy(argv: readonly string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { kubeconfig: { type: 'string' }, 'in-cluster': { type: 'boolean' }, config: { type: 'string' }, apply: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help === true) {
    io.out(MARK_LEGACY_HELP);
    return EXIT.OK;
  }
  const config = configFromFlags(values, io.env, ['config', 'kubeconfig', 'in-cluster']);
  const kc = loadKubeConfig({ kubeconfig: config.cluster.kubeconfig, inCluster: config.cluster.inCluster });
  if (kc.getCurrentCluster() === null) throw new UsageError('no cluster: pass --kubeconfig FILE or --in-cluster, or set KUBECONFIG');
  const core = kc.makeApiClient(CoreV1Api);
  const items: V1Namespace[] = [];
  let cont: string | undefined;
  do {
    const page = await core.listNamespace(pageParams(500, cont));
    items.push(...page.items);
    cont = page.metadata?._continue || undefined;
  } while (cont !== undefined);
  const plan = legacyPlan(items.map((n) => ({ name: n.metadata?.name ?? '', labels: n.metadata?.labels ?? {} })), config);
  const apply = values.apply === true;
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  let failed = 0;
  for (const name of plan.mark) {
    if (!apply) {
      io.out(`would mark ${name} ${MODE_LABEL}=audit\n`);
      continue;
    }
    try {
      await core.patchNamespace({ name, body: { metadata: { labels: { [MODE_LABEL]: 'audit' } } }, fieldManager: 'meshguard' }, merge);
      io.out(`marked ${name} ${MODE_LABEL}=audit\n`);
    } catch (err) {
      failed++;
      const e = err as { code?: unknown; body?: unknown };
      io.out(`FAILED ${name}: HTTP ${String(e.code ?? '?')} ${typeof e.body === 'string' ? e.body.slice(0, 300) : (err as Error).message}\n`);
    }
  }
  for (const s of plan.skip) io.out(`skipped ${s.name} (${s.why})\n`);
  io.out(`${plan.mark.length} namespace(s) ${apply ? 'marked' : 'to mark (dry run; --apply to label them)'}, ${plan.skip.length} skipped\n`);
  return failed > 0 ? EXIT.VIOLATIONS : EXIT.OK;
}
