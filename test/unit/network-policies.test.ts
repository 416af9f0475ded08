// The reconciled NetworkPolicy set, checked by evaluating it: the generated policies of a small
// cluster go through an independent NetworkPolicy evaluator (test/helpers/netpol-eval.ts) with a
// table of (source, destination, port) cases, so that "egress to an external IP is denied, to
// the egress gateway allowed" is a result, not an assumption. Also: the evaluator's own
// semantics, the plan (off by default, ambient extras, extras from configuration, apply order,
// leaving the mesh).
import t from 'tap';
import type { Config } from '../../src/config/types.ts';
import { desiredState, type NamespaceSnapshot } from '../../src/jobs/reconciler/desired.ts';
import { describeAction, planActions } from '../../src/jobs/reconciler/diff.ts';
import { MANAGED_LABELS, type ObservedObject } from '../../src/jobs/reconciler/resources.ts';
import { config } from '../helpers/review.ts';
import { connection, type Address, type Cluster, type Pod, type Policy, type Protocol } from '../helpers/netpol-eval.ts';

const NAMESPACES: Record<string, Record<string, string>> = {
  'team-a': { 'istio-injection': 'enabled' },
  'team-b': { 'istio-injection': 'enabled' },
  'team-amb': { 'istio.io/dataplane-mode': 'ambient' },
  plain: {},
  'istio-ingress': {},
  'istio-egress': {},
  'istio-system': {},
  'kube-system': {},
  monitoring: {},
};

const DB = '203.0.113.10';
const CONFIG = config({
  gatewayNamespaces: ['istio-ingress', 'istio-egress'],
  'reconciler.networkPolicies': {
    enabled: true,
    monitoringNamespaces: ['monitoring'],
    extra: {
      'allow-orders-db': {
        namespaces: ['team-a'],
        spec: { podSelector: { matchLabels: { app: 'orders' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: `${DB}/32` } }], ports: [{ port: 5432 }] }] },
      },
    },
  },
});

function snapshots(): NamespaceSnapshot[] {
  return Object.entries(NAMESPACES).map(([name, labels]) => ({ name, labels, terminating: false }));
}

function generated(c: Config = CONFIG): Policy[] {
  return desiredState(snapshots(), c, new Set())
    .objects.filter((o) => o.kind === 'NetworkPolicy')
    .map((o) => ({ namespace: o.namespace, name: o.name, spec: o.spec }));
}

const pod = (namespace: string, labels: Record<string, string>, ip: string): Pod => ({ kind: 'pod', namespace, labels, ip });
const addr = (ip: string): Address => ({ kind: 'address', ip });

const P = {
  orders: pod('team-a', { app: 'orders' }, '10.244.1.10'),
  web: pod('team-a', { app: 'web' }, '10.244.1.11'),
  teamB: pod('team-b', { app: 'billing' }, '10.244.2.10'),
  ambient: pod('team-amb', { app: 'cart' }, '10.244.3.10'),
  ambientPeer: pod('team-amb', { app: 'cart-peer' }, '10.244.3.11'),
  plain: pod('plain', { app: 'legacy' }, '10.244.4.10'),
  ingressGw: pod('istio-ingress', { istio: 'ingressgateway' }, '10.244.5.10'),
  egressGw: pod('istio-egress', { istio: 'egressgateway' }, '10.244.5.20'),
  istiod: pod('istio-system', { app: 'istiod' }, '10.244.6.10'),
  ztunnel: pod('istio-system', { app: 'ztunnel' }, '10.244.6.20'),
  dns: pod('kube-system', { 'k8s-app': 'kube-dns' }, '10.244.7.10'),
  prometheus: pod('monitoring', { app: 'prometheus' }, '10.244.8.10'),
};
const X = {
  internet: addr('8.8.8.8'),
  db: addr(DB),
  otherPublic: addr('203.0.113.11'),
  node: addr('172.18.0.2'),
  probeSnat: addr('169.254.7.127'),
  internetV6: addr('2001:4860:4860::8888'),
};

type Row = readonly [sentence: string, src: Pod | Address, dst: Pod | Address, port: number, protocol: Protocol, allowed: boolean];

const TABLE: readonly Row[] = [
  ['egress from a meshed pod to an external IP is denied', P.web, X.internet, 443, 'TCP', false],
  ['egress from a meshed pod to an external IPv6 address is denied', P.web, X.internetV6, 443, 'TCP', false],
  ['egress from a meshed pod to the egress gateway is allowed', P.web, P.egressGw, 8443, 'TCP', true],
  ['DNS over UDP to kube-dns is allowed', P.web, P.dns, 53, 'UDP', true],
  ['DNS over TCP to kube-dns is allowed', P.web, P.dns, 53, 'TCP', true],
  ['xDS and certificates from istiod (15012) are allowed', P.web, P.istiod, 15012, 'TCP', true],
  ['plaintext xDS to istiod (15010) is allowed', P.web, P.istiod, 15010, 'TCP', true],
  ['a pod reaches another pod of its own namespace', P.web, P.orders, 8080, 'TCP', true],
  ['a pod of another meshed namespace is refused at ingress', P.teamB, P.orders, 8080, 'TCP', false],
  ['a pod of an unmeshed namespace is refused at ingress', P.plain, P.orders, 8080, 'TCP', false],
  ['the ingress gateway reaches a meshed pod', P.ingressGw, P.orders, 8080, 'TCP', true],
  ['Prometheus in the monitoring namespace scrapes the merged metrics port', P.prometheus, P.orders, 15020, 'TCP', true],
  ['an address outside the cluster cannot connect to a meshed pod', X.internet, P.orders, 8080, 'TCP', false],
  ['a node address (the API server, host-network pods) is not a pod: egress to it is denied', P.web, X.node, 6443, 'TCP', false],
  ['the configured database ipBlock is open to the selected pods on its port', P.orders, X.db, 5432, 'TCP', true],
  ['the configured database ipBlock is closed on other ports', P.orders, X.db, 22, 'TCP', false],
  ['the configured database ipBlock is closed to pods it does not select', P.web, X.db, 5432, 'TCP', false],
  ['the database extra is not in namespaces it is not configured for', P.teamB, X.db, 5432, 'TCP', false],
  ['a neighbouring public address stays closed', P.orders, X.otherPublic, 5432, 'TCP', false],
  ['ambient: HBONE from a pod of the same namespace is allowed', P.ambientPeer, P.ambient, 15008, 'TCP', true],
  ['ambient: HBONE from the ingress gateway is allowed', P.ingressGw, P.ambient, 15008, 'TCP', true],
  ['ambient: HBONE from another meshed namespace is refused', P.teamB, P.ambient, 15008, 'TCP', false],
  ['ambient: kubelet probes SNATed to 169.254.7.127 reach the pod', X.probeSnat, P.ambient, 8080, 'TCP', true],
  ['ambient: egress to an external IP is denied', P.ambient, X.internet, 443, 'TCP', false],
  ['ambient: HBONE egress to the egress gateway is allowed', P.ambient, P.egressGw, 15008, 'TCP', true],
  ['sidecar namespaces get no probe-address exception', X.probeSnat, P.orders, 8080, 'TCP', false],
  ['a pod of an unmeshed namespace is not isolated: its egress is not meshguard\'s', P.plain, X.internet, 443, 'TCP', true],
  ['a connection from ztunnel\'s own pod address is refused: in-pod ztunnel connects with the source pod\'s address', P.ztunnel, P.ambient, 15008, 'TCP', false],
];

t.test('the generated NetworkPolicy set, evaluated: (source, destination, port) table', async (t) => {
  const cluster: Cluster = { namespaces: NAMESPACES, policies: generated() };
  t.same(
    [...new Set(cluster.policies.map((p) => p.namespace))].sort(),
    ['team-a', 'team-amb', 'team-b'],
    'only the meshed namespaces get policies',
  );
  const lines: string[] = [];
  for (const [sentence, src, dst, port, protocol, allowed] of TABLE) {
    const v = connection(cluster, src, dst, port, protocol);
    t.equal(v.allowed, allowed, sentence);
    const name = (e: Pod | Address): string => (e.kind === 'pod' ? `${e.namespace}/${e.labels['app'] ?? e.labels['istio'] ?? e.labels['k8s-app']}` : e.ip);
    lines.push(`${v.allowed ? 'allow' : 'deny '} ${name(src)} -> ${name(dst)}:${port}/${protocol}${v.deniedBy !== undefined ? ` (${v.deniedBy})` : ''}  ${sentence}`);
  }
  t.comment(`evaluator table:\n${lines.join('\n')}`);
});

t.test('NetworkPolicies are additive: one tenant policy with an open egress rule reopens the internet', async (t) => {
  const open: Policy = { namespace: 'team-a', name: 'tenant-open', spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{}] } };
  const wide: Policy = { namespace: 'team-a', name: 'tenant-wide', spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }] }] } };
  for (const extra of [open, wide]) {
    const cluster: Cluster = { namespaces: NAMESPACES, policies: [...generated(), extra] };
    t.equal(connection(cluster, P.web, X.internet, 443).allowed, true, `${extra.name}: 8.8.8.8:443 is reachable again (what network-policy-widening denies)`);
  }
});

t.test('the evaluator follows the NetworkPolicy semantics', async (t) => {
  const ns = { a: {}, b: { team: 'b' } };
  const a1 = pod('a', { app: 'x' }, '10.0.0.1');
  const a2 = pod('a', { app: 'y' }, '10.0.0.2');
  const b1 = pod('b', { app: 'x' }, '10.0.1.1');
  const run = (policies: Policy[], src: Pod | Address, dst: Pod | Address, port = 80, proto: Protocol = 'TCP'): boolean => connection({ namespaces: ns, policies }, src, dst, port, proto).allowed;
  const pol = (namespace: string, spec: Record<string, unknown>): Policy => ({ namespace, name: 'p', spec });
  t.equal(run([], a1, a2), true, 'no policy: open');
  t.equal(run([pol('a', { podSelector: { matchLabels: { app: 'y' } } })], a2, a1), true, 'a pod not selected stays open (isolation only when selected)');
  t.equal(run([pol('a', { podSelector: {} })], b1, a1), false, 'policyTypes absent: Ingress isolation');
  t.equal(run([pol('a', { podSelector: {} })], a1, addr('8.8.8.8')), true, 'policyTypes absent and no egress section: egress not isolated');
  t.equal(run([pol('a', { podSelector: {}, egress: [{ ports: [{ port: 53 }] }] })], a1, addr('8.8.8.8'), 443), false, 'egress rules imply Egress');
  t.equal(run([pol('a', { podSelector: {}, egress: [] })], a1, addr('8.8.8.8')), true, 'an empty egress list does not (the API server defaults policyTypes from a non-empty one)');
  t.equal(run([pol('a', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })], a2, a1), true, 'podSelector alone: own namespace');
  t.equal(run([pol('a', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })], b1, a1), false, 'podSelector alone: not other namespaces');
  t.equal(run([pol('a', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'b' } } }] }] })], b1, a1), true, 'namespaceSelector by label');
  t.equal(run([pol('a', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'b' } }, podSelector: { matchLabels: { app: 'z' } } }] }] })], b1, a1), false, 'namespaceSelector and podSelector together: both must match');
  t.equal(run([pol('a', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['b'] }] } }] }] })], b1, a1), true, 'the automatic name label');
  const block = { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '10.1.0.0/16', except: ['10.1.2.0/24'] } }] }] };
  t.equal(run([pol('a', block)], a1, addr('10.1.3.4')), true, 'ipBlock: inside the cidr');
  t.equal(run([pol('a', block)], a1, addr('10.1.2.4')), false, 'ipBlock: except carves out');
  t.equal(run([pol('a', block)], a1, addr('10.2.0.1')), false, 'ipBlock: outside the cidr');
  const range = { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ protocol: 'TCP', port: 8000, endPort: 8100 }] }] };
  t.equal(run([pol('a', range)], a1, b1, 8050), true, 'endPort: inside the range');
  t.equal(run([pol('a', range)], a1, b1, 8101), false, 'endPort: past the range');
  t.equal(run([pol('a', range)], a1, b1, 8050, 'UDP'), false, 'ports: the protocol must match');
  t.equal(run([pol('a', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 53 }] }] })], a1, b1, 53, 'TCP'), true, 'ports: protocol defaults to TCP');
  t.equal(run([pol('a', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 53 }] }] })], a1, b1, 53, 'UDP'), false, 'ports: and only TCP');
  const named = { ...b1, namedPorts: { http: 8080 } };
  const byName = [pol('b', { podSelector: {}, ingress: [{ ports: [{ port: 'http' }] }] })];
  t.equal(run(byName, a1, named, 8080), true, 'a named port matches the container port of that name');
  t.equal(run(byName, a1, named, 9090), false, 'and no other');
  const union = [pol('a', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 80 }] }] }), pol('a', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 443 }] }] })];
  t.equal(run(union, a1, b1, 80) && run(union, a1, b1, 443), true, 'policies are a union of allows');
  t.equal(run(union, a1, b1, 22), false, 'and nothing more');
  t.equal(run([pol('b', { podSelector: {}, policyTypes: ['Ingress'] })], a1, b1), false, 'a connection also needs the destination\'s ingress');
  t.equal(run([pol('a', { podSelector: {}, ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['y'] }] } }] }] })], a2, a1), false, 'matchExpressions NotIn');
});

t.test('the plan: off by default; on, three policies per meshed namespace and four in ambient ones', async (t) => {
  t.equal(config().reconciler.networkPolicies.enabled, false, 'off by default in the binary');
  t.same(generated(config()), [], 'no NetworkPolicy when off');
  const names = (ns: string): string[] => generated().filter((p) => p.namespace === ns).map((p) => p.name).sort();
  t.same(names('team-a'), ['allow-orders-db', 'meshguard-allow-egress', 'meshguard-allow-ingress', 'meshguard-default-deny']);
  t.same(names('team-b'), ['meshguard-allow-egress', 'meshguard-allow-ingress', 'meshguard-default-deny']);
  t.same(names('team-amb'), ['meshguard-allow-ambient', 'meshguard-allow-egress', 'meshguard-allow-ingress', 'meshguard-default-deny']);
  const db = generated().find((p) => p.name === 'allow-orders-db');
  t.same((db?.spec['egress'] as { ports: unknown[] }[])[0]?.ports, [{ port: 5432, protocol: 'TCP' }], 'a configured port gets the protocol the API server would default');
  const bare = config({ 'reconciler.networkPolicies': { enabled: true, extra: { bare: { namespaces: [], spec: { egress: [{ ports: [{ port: 53 }] }] } } } } });
  t.same(
    generated(bare).find((p) => p.name === 'bare' && p.namespace === 'team-a')?.spec,
    { podSelector: {}, policyTypes: ['Ingress', 'Egress'], egress: [{ ports: [{ port: 53, protocol: 'TCP' }] }] },
    'a configured spec gets podSelector and policyTypes as the API server would default them',
  );
  const ambientOff = config({ 'ambient.allowed': false, 'reconciler.networkPolicies.enabled': true });
  t.notOk(generated(ambientOff).some((p) => p.namespace === 'team-amb'), 'ambient not allowed: the ambient namespace is not managed');
  const own = config({ 'reconciler.networkPolicies': { enabled: true, monitoringNamespaces: ['team-a'] } });
  const ingress = generated(own).find((p) => p.namespace === 'team-a' && p.name === 'meshguard-allow-ingress');
  t.same(ingress?.spec['ingress'], [{ from: [{ podSelector: {} }] }], 'a namespace is not listed as its own extra source');
});

t.test('the plan: allow policies before default-deny; leaving the mesh deletes the set, default-deny first', async (t) => {
  const c = config({ 'reconciler.networkPolicies.enabled': true });
  const one = [{ name: 'team-a', labels: { 'istio-injection': 'enabled' }, terminating: false }];
  const desired = desiredState(one, c, new Set());
  const creates = planActions(desired, []).filter((a) => a.type === 'create' && a.desired.kind === 'NetworkPolicy').map(describeAction);
  t.match(creates.at(-1), /^create NetworkPolicy team-a\/meshguard-default-deny/, 'default-deny is created last');
  const observed: ObservedObject[] = desired.objects.map((d) => ({ ...d, labels: MANAGED_LABELS, spec: d.spec, resourceVersion: '1', uid: d.name, raw: {} }));
  t.same(planActions(desired, observed), [], 'nothing to do once created');
  const edited = observed.map((o) => (o.name === 'meshguard-allow-egress' ? { ...o, spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{}] } } : o));
  const restore = planActions(desired, edited).map(describeAction);
  t.equal(restore.length, 1);
  t.match(restore[0], /^restore NetworkPolicy team-a\/meshguard-allow-egress: spec\.egress/, 'a hand edit is restored');
  const left = desiredState([{ ...one[0]!, labels: {} }], c, new Set());
  const deletes = planActions(left, observed).filter((a) => a.type === 'delete' && a.observed.kind === 'NetworkPolicy').map(describeAction);
  t.equal(deletes.length, 3);
  t.match(deletes[0], /^delete NetworkPolicy team-a\/meshguard-default-deny \(namespace team-a is not in the mesh\)/, 'default-deny goes first');
  const off = desiredState(one, config(), new Set());
  t.notOk(planActions(off, []).some((a) => a.type === 'create' && a.desired.kind === 'NetworkPolicy'), 'switched off: nothing planned');
});
