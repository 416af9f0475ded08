// The reconciler's pure core: desired state from namespaces and configuration, and the diff
// against what the API server has. Tables whose rows are sentences.
import t from 'tap';
import { desiredState, type NamespaceSnapshot } from '../../src/jobs/reconciler/desired.ts';
import { describeAction, objectChanges, planActions, valueChanges, type Action } from '../../src/jobs/reconciler/diff.ts';
import { MANAGED_LABELS, objectKey, type DesiredObject, type ManagedKind, type ObservedObject } from '../../src/jobs/reconciler/resources.ts';
import { config } from '../helpers/review.ts';

const ns = (name: string, labels: Record<string, string> = { 'istio-injection': 'enabled' }, terminating = false): NamespaceSnapshot => ({ name, labels, terminating });
const keys = (objects: readonly { kind: string; namespace: string; name: string }[]): string[] => objects.map(objectKey);
const NONE = new Set<string>();

const BUILTIN = (n: string): string[] => [
  `AuthorizationPolicy/${n}/allow-same-namespace`,
  `AuthorizationPolicy/${n}/default-deny`,
  `PeerAuthentication/${n}/default`,
  `Sidecar/${n}/default`,
];

const GOOGLE = {
  namespaces: [],
  spec: { hosts: ['google.com'], ports: [{ number: 443, name: 'tls', protocol: 'TLS' }], location: 'MESH_EXTERNAL', resolution: 'DNS' },
};

t.test('desired state: which namespaces get which objects', async (t) => {
  const rows: { name: string; namespaces: NamespaceSnapshot[]; overrides?: Record<string, unknown>; revisions?: string[]; want: string[] }[] = [
    { name: 'a namespace labelled istio-injection=enabled gets the four built-in objects', namespaces: [ns('team-a')], want: BUILTIN('team-a') },
    { name: 'an ambient namespace gets them too', namespaces: [ns('amb', { 'istio.io/dataplane-mode': 'ambient' })], want: BUILTIN('amb') },
    { name: 'a namespace on a known revision gets them', namespaces: [ns('rev', { 'istio.io/rev': 'canary' })], revisions: ['canary'], want: BUILTIN('rev') },
    { name: 'a namespace on an unknown revision is not in the mesh and gets nothing', namespaces: [ns('rev', { 'istio.io/rev': 'gone' })], want: [] },
    { name: 'a namespace with no mesh label gets nothing', namespaces: [ns('plain', {})], want: [] },
    { name: 'a namespace labelled istio-injection=disabled gets nothing', namespaces: [ns('off', { 'istio-injection': 'disabled' })], want: [] },
    { name: 'a namespace with dataplane-mode=none gets nothing', namespaces: [ns('none', { 'istio.io/dataplane-mode': 'none' })], want: [] },
    {
      name: 'a namespace with both istio-injection=enabled and istio.io/rev is still served by a dataplane and keeps its hardening',
      namespaces: [ns('both', { 'istio-injection': 'enabled', 'istio.io/rev': 'x' })],
      want: BUILTIN('both'),
    },
    { name: 'an exempt namespace (kube-system) gets nothing even when labelled', namespaces: [ns('kube-system')], want: [] },
    { name: "meshguard's own namespace gets nothing", namespaces: [ns('meshguard')], want: [] },
    { name: 'a gateway namespace gets nothing', namespaces: [ns('gw')], overrides: { gatewayNamespaces: ['gw'] }, want: [] },
    { name: 'a terminating namespace gets nothing', namespaces: [ns('going', undefined, true)], want: [] },
    {
      name: 'allowSameNamespace false leaves out allow-same-namespace',
      namespaces: [ns('team-a')],
      overrides: { 'reconciler.allowSameNamespace': false },
      want: ['AuthorizationPolicy/team-a/default-deny', 'PeerAuthentication/team-a/default', 'Sidecar/team-a/default'],
    },
    {
      name: 'a global ServiceEntry (empty namespaces) goes into every managed namespace and no other',
      namespaces: [ns('a'), ns('b'), ns('plain', {})],
      overrides: { 'reconciler.serviceEntries': { 'allow-google': GOOGLE } },
      want: [...BUILTIN('a'), ...BUILTIN('b'), 'ServiceEntry/a/allow-google', 'ServiceEntry/b/allow-google'].sort(),
    },
    {
      name: 'a per-namespace ServiceEntry goes only into the listed namespaces that are managed',
      namespaces: [ns('a'), ns('b'), ns('plain', {})],
      overrides: { 'reconciler.serviceEntries': { 'allow-google': { ...GOOGLE, namespaces: ['b', 'plain', 'absent'] } } },
      want: [...BUILTIN('a'), ...BUILTIN('b'), 'ServiceEntry/b/allow-google'].sort(),
    },
    {
      name: 'a configured AuthorizationPolicy is added per namespace',
      namespaces: [ns('a')],
      overrides: { 'reconciler.authorizationPolicies': { 'allow-ingress': { namespaces: ['a'], spec: { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['istio-ingress'] } }] }] } } } },
      want: [...BUILTIN('a'), 'AuthorizationPolicy/a/allow-ingress'].sort(),
    },
  ];
  for (const row of rows) {
    const c = config(row.overrides ?? {});
    const d = desiredState(row.namespaces, c, new Set(row.revisions ?? []));
    t.same(keys(d.objects), row.want, row.name);
  }
});

t.test('desired state: the built-in specs and labels', async (t) => {
  const d = desiredState([ns('team-a')], config(), new Set());
  const by = (k: string): DesiredObject | undefined => d.objects.find((o) => objectKey(o) === k);
  t.same(by('Sidecar/team-a/default')?.spec, { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }, 'the Sidecar is selector-less and REGISTRY_ONLY');
  t.same(by('PeerAuthentication/team-a/default')?.spec, { mtls: { mode: 'STRICT' } }, 'the PeerAuthentication is STRICT');
  t.same(by('AuthorizationPolicy/team-a/default-deny')?.spec, {}, 'default-deny is an empty spec');
  t.same(by('AuthorizationPolicy/team-a/allow-same-namespace')?.spec, { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['team-a'] } }] }] }, 'allow-same-namespace allows its own namespace');
  for (const o of d.objects) t.same(o.labels, MANAGED_LABELS, `${objectKey(o)} carries the managed labels`);
  t.same(d.namespaces.get('team-a'), 'managed');
});

t.test('desired state: a configured policy named like a built-in one replaces it', async (t) => {
  const spec = { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['team-a', 'istio-ingress'] } }] }] };
  const d = desiredState([ns('team-a')], config({ 'reconciler.authorizationPolicies': { 'allow-same-namespace': { namespaces: [], spec } } }), new Set());
  const o = d.objects.find((x) => x.name === 'allow-same-namespace');
  t.same(o?.spec, spec);
  t.equal(o?.source, 'config:reconciler.authorizationPolicies.allow-same-namespace');
  t.equal(d.objects.length, 4, 'still four objects');
});

t.test('desired state is pure: same input, same output; the config is not shared', async (t) => {
  const c = config({ 'reconciler.serviceEntries': { 'allow-google': GOOGLE } });
  const a = desiredState([ns('b'), ns('a')], c, new Set());
  const b = desiredState([ns('a'), ns('b')], c, new Set());
  t.same(a.objects, b.objects, 'order of input does not matter');
  (a.objects.find((o) => o.kind === 'ServiceEntry')?.spec as { hosts: string[] }).hosts.push('x');
  t.same(c.reconciler.serviceEntries['allow-google']?.spec['hosts'], ['google.com'], 'specs are copies');
});

// ------------------------------------------------------------------------------- diff ---

function observed(kind: ManagedKind, namespace: string, name: string, spec: unknown, labels: Record<string, string> = { ...MANAGED_LABELS }): ObservedObject {
  return { kind, namespace, name, spec, labels, resourceVersion: '1', uid: `uid-${name}`, raw: { metadata: { name, namespace, labels } } };
}

function builtinObserved(n: string): ObservedObject[] {
  return desiredState([ns(n)], config(), new Set()).objects.map((d) => observed(d.kind, d.namespace, d.name, structuredClone(d.spec)));
}

const line = (a: Action): string => `${a.type} ${a.type === 'delete' ? objectKey(a.observed) : objectKey(a.desired)}`;

t.test('diff: what is planned', async (t) => {
  const meshed = desiredState([ns('team-a')], config(), new Set());
  const rows: { name: string; desired: ReturnType<typeof desiredState>; observed: ObservedObject[]; conflicts?: Set<string>; want: string[] }[] = [
    {
      name: 'nothing observed: everything is created, ServiceEntries and allow policies before default-deny',
      desired: desiredState([ns('team-a')], config({ 'reconciler.serviceEntries': { 'allow-google': GOOGLE } }), new Set()),
      observed: [],
      want: [
        'create ServiceEntry/team-a/allow-google',
        'create AuthorizationPolicy/team-a/allow-same-namespace',
        'create PeerAuthentication/team-a/default',
        'create Sidecar/team-a/default',
        'create AuthorizationPolicy/team-a/default-deny',
      ],
    },
    { name: 'everything in place: nothing to do', desired: meshed, observed: builtinObserved('team-a'), want: [] },
    {
      name: 'a managed object deleted by hand is created again',
      desired: meshed,
      observed: builtinObserved('team-a').filter((o) => o.kind !== 'Sidecar'),
      want: ['create Sidecar/team-a/default'],
    },
    {
      name: 'a managed object edited by hand is restored',
      desired: meshed,
      observed: builtinObserved('team-a').map((o) => (o.kind === 'PeerAuthentication' ? observed('PeerAuthentication', 'team-a', 'default', { mtls: { mode: 'PERMISSIVE' } }) : o)),
      want: ['update PeerAuthentication/team-a/default'],
    },
    {
      name: 'a namespace that left the mesh: its managed objects are deleted, default-deny first',
      desired: desiredState([ns('team-a', {})], config(), new Set()),
      observed: builtinObserved('team-a'),
      want: [
        'delete AuthorizationPolicy/team-a/default-deny',
        'delete Sidecar/team-a/default',
        'delete PeerAuthentication/team-a/default',
        'delete AuthorizationPolicy/team-a/allow-same-namespace',
      ],
    },
    {
      name: 'a deleted namespace: its leftovers are deleted',
      desired: desiredState([], config(), new Set()),
      observed: [observed('Sidecar', 'gone', 'default', {})],
      want: ['delete Sidecar/gone/default'],
    },
    {
      name: 'an object without the managed label is never touched, even when it has a desired name',
      desired: meshed,
      observed: [...builtinObserved('team-a').filter((o) => o.kind !== 'Sidecar'), observed('Sidecar', 'team-a', 'default', { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }, { team: 'a' })],
      want: ['create Sidecar/team-a/default'],
    },
    {
      name: 'a name known to be taken by an unmanaged object is a conflict, not a create',
      desired: meshed,
      observed: builtinObserved('team-a').filter((o) => o.kind !== 'Sidecar'),
      conflicts: new Set(['Sidecar/team-a/default']),
      want: ['conflict Sidecar/team-a/default'],
    },
    {
      name: 'an object that is no longer configured is deleted',
      desired: meshed,
      observed: [...builtinObserved('team-a'), observed('ServiceEntry', 'team-a', 'allow-google', GOOGLE.spec)],
      want: ['delete ServiceEntry/team-a/allow-google'],
    },
    {
      name: 'an extra label added by hand is kept (no update)',
      desired: meshed,
      observed: builtinObserved('team-a').map((o) => ({ ...o, labels: { ...o.labels, extra: 'yes' } })),
      want: [],
    },
    {
      name: 'a removed meshguard.dev/managed label is restored',
      desired: meshed,
      observed: builtinObserved('team-a').map((o) => (o.kind === 'Sidecar' ? { ...o, labels: { 'app.kubernetes.io/managed-by': 'meshguard' } } : o)),
      want: ['update Sidecar/team-a/default'],
    },
  ];
  for (const row of rows) t.same(planActions(row.desired, row.observed, row.conflicts ?? NONE).map(line), row.want, row.name);
});

t.test('diff: the changes a restore logs', async (t) => {
  const rows: { name: string; before: unknown; after: unknown; want: string[] }[] = [
    { name: 'a changed leaf', before: { mtls: { mode: 'PERMISSIVE' } }, after: { mtls: { mode: 'STRICT' } }, want: ['spec.mtls.mode: "PERMISSIVE" -> "STRICT"'] },
    { name: 'an added key', before: {}, after: { mtls: { mode: 'STRICT' } }, want: ['spec.mtls: absent -> {"mode":"STRICT"}'] },
    { name: 'a removed key', before: { rules: [{}] }, after: {}, want: ['spec.rules: [{}] -> absent'] },
    { name: 'keys that are not identifiers are quoted', before: { 'a-b': 1 }, after: { 'a-b': 2 }, want: ['spec["a-b"]: 1 -> 2'] },
    { name: 'arrays compare as a whole', before: { hosts: ['a'] }, after: { hosts: ['a', 'b'] }, want: ['spec.hosts: ["a"] -> ["a","b"]'] },
    { name: 'equal values: nothing', before: { a: [1, { b: 2 }] }, after: { a: [1, { b: 2 }] }, want: [] },
  ];
  for (const row of rows) t.same(valueChanges(row.before, row.after, 'spec'), row.want, row.name);
  const d = desiredState([ns('team-a')], config(), new Set()).objects.find((o) => o.kind === 'AuthorizationPolicy' && o.name === 'default-deny') as DesiredObject;
  t.same(objectChanges(observed('AuthorizationPolicy', 'team-a', 'default-deny', undefined), d), [], 'an absent spec equals an empty one');
  const a = planActions(desiredState([ns('team-a')], config(), new Set()), [observed('PeerAuthentication', 'team-a', 'default', { mtls: { mode: 'DISABLE' } })]).find((x) => x.type === 'update');
  t.equal(a === undefined ? '' : describeAction(a), 'restore PeerAuthentication team-a/default: spec.mtls.mode: "DISABLE" -> "STRICT"', 'the log line names the object and the change');
});
