// The audit-first rollout's product pieces: which namespaces `meshguard mark-legacy` marks, what
// `scan` says enforce would block per namespace, and how it lists exceptions.
import t from 'tap';
import type { Finding } from '../../src/jobs/scan/report.ts';
import { legacyPlan } from '../../src/cli/mark-legacy.ts';
import { renderExceptions, renderWouldBlock, wouldBlock } from '../../src/cli/scan-rollout.ts';
import { decodeException } from '../../src/core/exception-model.ts';
import { RULE_IDS } from '../../src/policies/registry.ts';
import { config } from '../helpers/review.ts';

t.test('mark-legacy marks existing namespaces that are neither exempt nor already marked', async (t) => {
  const plan = legacyPlan(
    [
      { name: 'legacy', labels: {} },
      { name: 'team-a', labels: { 'istio-injection': 'enabled' } },
      { name: 'kube-system', labels: {} },
      { name: 'meshguard', labels: {} },
      { name: 'pinned', labels: { 'meshguard.dev/mode': 'enforce' } },
    ],
    config(),
  );
  t.same(plan.mark, ['legacy', 'team-a'], 'a namespace that predates meshguard is marked, meshed or not');
  t.same(plan.skip.map((s) => s.name), ['kube-system', 'meshguard', 'pinned'], 'exempt namespaces, meshguard\'s own and one an admin already labelled are left alone');
  t.match(plan.skip.find((s) => s.name === 'pinned')?.why, 'already meshguard.dev/mode=enforce');
});

const finding = (namespace: string, name: string, rule: string, action: 'deny' | 'warn'): Finding => ({ kind: 'Deployment', apiVersion: 'apps/v1', namespace, name, uid: '', rule, action, status: 'fail', message: 'm', fix: '' });

t.test('scan says per namespace what enforce would deny, and what audit admits today', async (t) => {
  const findings = [
    finding('legacy', 'web', 'workload-injection-opt-out', 'warn'),
    finding('legacy', 'web', 'workload-host-network', 'warn'),
    finding('legacy', 'db', 'workload-host-network', 'warn'),
    finding('team-a', 'api', 'workload-host-network', 'deny'),
    finding('team-b', 'x', 'workload-capture-bypass', 'warn'),
  ];
  const rows = wouldBlock(findings, config({ rules: { 'workload-capture-bypass': { mode: 'audit' } } }));
  t.same(rows, [
    { namespace: 'legacy', objects: 2, violations: 3, auditedToday: 3 },
    { namespace: 'team-a', objects: 1, violations: 1, auditedToday: 0 },
  ], 'a rule pinned to audit would block nothing; objects are counted once');
  const text = renderWouldBlock(rows);
  t.match(text, '  legacy: 2 objects would be denied (3 violations; all admitted today (audit))');
  t.match(text, '  team-a: 1 object would be denied (1 violation; all denied today)');
  t.equal(renderWouldBlock([]), 'If enforced: nothing would be denied.\n');
});

t.test('scan lists exceptions as active, expired or malformed', async (t) => {
  const ex = (name: string, expires: string, reason = 'r'): unknown => ({ metadata: { name, namespace: 'mon' }, spec: { kinds: ['apps/DaemonSet'], names: ['ne'], rules: [{ id: 'workload-host-network' }], reason, expires } });
  const text = renderExceptions({ decoded: [ex('a', '2099-01-01T00:00:00Z'), ex('b', '2020-01-01T00:00:00Z'), ex('c', '2099-01-01T00:00:00Z', '')].map((o) => decodeException(o, RULE_IDS)) }, Date.parse('2026-06-01T00:00:00Z'));
  t.match(text, /^MeshguardExceptions: 1 active, 1 expired, 1 malformed \(never applied\)\n/);
  t.match(text, '  ACTIVE  mon/a: apps/DaemonSet ne from workload-host-network; expires 2099-01-01T00:00:00Z; reason: r');
  t.match(text, '  EXPIRED mon/b: apps/DaemonSet ne from workload-host-network; expired 2020-01-01T00:00:00Z');
  t.match(text, 'MALFORMED MeshguardException mon/c: spec.reason must say why');
  t.equal(renderExceptions({ decoded: [], error: 'the MeshguardException CRD is not installed' }, 0), 'MeshguardExceptions: not read: the MeshguardException CRD is not installed\n');
});
