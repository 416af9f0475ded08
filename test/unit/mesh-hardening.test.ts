// NetworkPolicy admission (network-policy-widening) over its fixture folder and the CIDR helper,
// the per-rule default mode and advisory findings, and the mesh-wide hardening checks: at
// admission (CNI, distroless proxy, protocol sniffing, advisory reminders) and in scan
// (inventory: root STRICT PeerAuthentication, auto mTLS with a root DestinationRule,
// RequestAuthentication with an AuthorizationPolicy requiring a principal).
import t from 'tap';
import { readFileSync } from 'node:fs';
import type { KObject } from '../../src/core/request.ts';
import { checkManifests } from '../../src/cli/check.ts';
import { parseManifests } from '../../src/cli/manifests.ts';
import { inventoryFindings } from '../../src/jobs/scan/inventory.ts';
import { scanCluster } from '../../src/jobs/scan/scan.ts';
import type { ListRequest, ListResponse, ScanSource } from '../../src/jobs/scan/adapter.ts';
import { parseCidr, publicAddresses, type Cidr } from '../../src/policies/lib/network-policy-cidr.ts';
import { imageTag } from '../../src/policies/mesh-distroless-proxy.ts';
import { declaredProtocol } from '../../src/policies/mesh-protocol-sniffing.ts';
import { BUILTIN_RULES } from '../../src/policies/registry.ts';
import { ADMIN, config, failedRules, ns, ruleFixtures, state, validate } from '../helpers/review.ts';

const RULE = 'network-policy-widening';
const FIXTURES = ruleFixtures(RULE);
const MESHED = { 'istio-injection': 'enabled' };

function fixtureState(f: (typeof FIXTURES)[number]): ReturnType<typeof state> {
  return state(f.namespaces.map((n) => ns(String(n.metadata?.name), (n.metadata?.labels ?? {}) as Record<string, string>)));
}

t.test('network-policy-widening: every fixture, enforce and audit, and offline', async (t) => {
  t.ok(FIXTURES.some((f) => f.expect === 'allow') && FIXTURES.some((f) => f.expect === 'deny'), 'good and bad fixtures exist');
  for (const f of FIXTURES) {
    for (const o of f.objects) {
      const v = validate(o, { state: fixtureState(f) });
      if (f.expect === 'allow') {
        t.equal(v.response.response.allowed, true, `${f.name}: admitted`);
        t.same(failedRules(v), [], `${f.name}: no findings`);
        continue;
      }
      t.equal(v.response.response.allowed, false, `${f.name}: denied`);
      t.same(failedRules(v), [RULE], `${f.name}: by ${RULE} only`);
      t.match(v.response.response.status?.message, 'NetworkPolicies are additive', `${f.name}: the message explains the union`);
      t.ok(v.denials.every((d) => d.violation?.path !== undefined), `${f.name}: every finding has a path`);
      const audit = validate(o, { state: fixtureState(f), config: config({ mode: 'audit' }) });
      t.equal(audit.response.response.allowed, true, `${f.name}: audit mode admits`);
      t.ok(audit.response.response.warnings?.some((w) => w.startsWith(`policy ${RULE}: `)), `${f.name}: with a warning`);
      t.equal(validate(o, { state: fixtureState(f), user: ADMIN }).response.response.allowed, true, `${f.name}: an administrator may`);
    }
    const { manifests } = parseManifests(f.file, readFileSync(f.file, 'utf8'));
    const offline = checkManifests(manifests, config());
    t.equal(offline.some((x) => x.rule === RULE), f.expect === 'deny', `${f.name}: meshguard check agrees`);
  }
});

const open = (labels: Record<string, string> = {}): KObject => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name: 'meshguard-extra', namespace: 'team', labels },
  spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '52.95.110.1/32' } }] }] },
});

t.test("network-policy-widening: meshguard's own managed policies, unmeshed namespaces, ignored directions", async (t) => {
  const s = state([ns('team', MESHED), ns('plain', {})]);
  const managed = { 'app.kubernetes.io/managed-by': 'meshguard', 'meshguard.dev/managed': 'true' };
  const reconciler = { username: 'system:serviceaccount:meshguard:meshguard', groups: ['system:serviceaccounts'] };
  t.equal(validate(open(managed), { state: s, user: reconciler }).response.response.allowed, true, "the reconciler's managed policy is admitted");
  t.equal(validate(open(), { state: s, user: reconciler }).response.response.allowed, false, 'the same service account without the managed label is not');
  t.equal(validate(open(managed), { state: s }).response.response.allowed, false, 'a tenant copying the managed label is not');
  t.equal(validate(open(managed), { state: s, user: { username: 'system:serviceaccount:team:meshguard', groups: [] } }).response.response.allowed, false, 'nor a service account of another namespace');
  const plain = { ...open(), metadata: { name: 'x', namespace: 'plain' } };
  t.equal(validate(plain, { state: s }).response.response.allowed, true, 'a namespace outside the mesh is not judged');
  t.equal(validate(open(), { state: state([]) }).response.response.allowed, false, 'an unknown namespace is judged (unknownNamespace deny)');
  t.equal(validate(open(), { state: state([]), config: config({ unknownNamespace: 'allow' }) }).response.response.allowed, true, 'unless unknownNamespace is allow');
  const ingressOnly: KObject = { ...open(), spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: {} }] }], egress: [{}] } };
  t.equal(validate(ingressOnly, { state: s }).response.response.allowed, true, 'egress rules of an Ingress-only policy have no effect and are not judged');
  const implied: KObject = { ...open(), spec: { podSelector: {}, egress: [{}] } };
  t.equal(validate(implied, { state: s }).response.response.allowed, false, 'without policyTypes egress rules count (the API server adds Egress)');
  const emptyTypes: KObject = { ...open(), spec: { podSelector: {}, policyTypes: [], egress: [{}] } };
  t.equal(validate(emptyTypes, { state: s }).response.response.allowed, false, 'an empty policyTypes is defaulted the same way');
  const ok: KObject = { ...open(), spec: { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['0.0.0.0/1', '128.0.0.0/1'] } }] }] } };
  t.equal(validate(ok, { state: s }).response.response.allowed, true, 'an ipBlock whose except covers all public space admits nothing public');
});

t.test('the CIDR helper: public addresses an ipBlock admits', async (t) => {
  const p = (cidr: string, except: string[] = []): bigint => publicAddresses(parseCidr(cidr) as Cidr, except.map((e) => parseCidr(e) as Cidr));
  const rows: [string, bigint, boolean][] = [
    ['10.0.0.0/8', p('10.0.0.0/8'), false],
    ['192.168.1.0/24', p('192.168.1.0/24'), false],
    ['100.64.0.0/10 (shared CGNAT space)', p('100.64.0.0/10'), false],
    ['169.254.7.127/32 (link-local)', p('169.254.7.127/32'), false],
    ['203.0.113.0/24 (documentation)', p('203.0.113.0/24'), false],
    ['8.8.8.8/32', p('8.8.8.8/32'), true],
    ['0.0.0.0/0', p('0.0.0.0/0'), true],
    ['0.0.0.0/0 except the private ranges', p('0.0.0.0/0', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']), true],
    ['172.16.0.0/11 (wider than 172.16.0.0/12)', p('172.16.0.0/11'), true],
    ['fd00::/8 (ULA)', p('fd00::/8'), false],
    ['2001:db8::/32 (documentation)', p('2001:db8::/32'), false],
    ['::/0', p('::/0'), true],
    ['2600::/16', p('2600::/16'), true],
    ['::ffff:8.8.8.8/128 (IPv4-mapped public)', p('::ffff:8.8.8.8/128'), true],
  ];
  for (const [label, n, isPublic] of rows) t.equal(n > 0n, isPublic, `${label}: ${isPublic ? 'public' : 'not public'}`);
  t.equal(p('8.8.8.0/24'), 256n, 'counts addresses');
  t.equal(parseCidr('300.1.1.1/8'), undefined, 'a bad address is not a CIDR');
  t.equal(parseCidr('10.0.0.0/33'), undefined, 'nor a bad prefix');
});

/** An injected Pod as Istio writes it: istio-init's full capture, or the CNI's validation container. */
const pod = (initName: string, proxyImage: string): KObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web', namespace: 'team', annotations: { 'sidecar.istio.io/status': `{"initContainers":["${initName}"],"containers":["istio-proxy"]}` } },
  spec: {
    initContainers: [{
      name: initName,
      image: 'docker.io/istio/proxyv2:1.24.0',
      args: initName === 'istio-init'
        ? ['istio-iptables', '-p', '15001', '-z', '15006', '-u', '1337', '-m', 'REDIRECT', '-i', '*', '-x', '', '-b', '*', '-d', '15090,15021,15020']
        : ['istio-iptables', '-p', '15001', '-z', '15006', '-u', '1337', '-m', 'REDIRECT', '-i', '*', '-x', '', '-b', '*', '-d', '15090,15021,15020', '--run-validation', '--skip-rule-apply'],
    }],
    containers: [
      { name: 'app', image: 'registry.example/app:1' },
      { name: 'istio-proxy', image: proxyImage, args: ['proxy', 'sidecar'] },
    ],
  },
});

t.test('mesh-istio-cni and mesh-distroless-proxy: only where the platform asks', async (t) => {
  const s = state([ns('team', MESHED)]);
  const init = pod('istio-init', 'docker.io/istio/proxyv2:1.24.0');
  t.same(failedRules(validate(init, { state: s })), [], 'switches off (the default): nothing reported');
  const cni = config({ 'meshHardening.requireCni': true });
  const denied = validate(init, { state: s, config: cni });
  t.same(failedRules(denied), ['mesh-istio-cni'], 'requireCni: an injected istio-init is a violation');
  t.equal(denied.response.response.allowed, false, 'and denied (the platform asked: the namespace mode applies)');
  t.same(failedRules(validate(pod('istio-validation', 'docker.io/istio/proxyv2:1.24.0'), { state: s, config: cni })), [], 'istio-validation (the CNI) passes');
  const uninjected = { ...init, metadata: { name: 'web', namespace: 'team' } };
  t.notOk(failedRules(validate(uninjected, { state: s, config: cni })).includes('mesh-istio-cni'), 'a pod Istio did not inject is not judged by mesh-istio-cni (other rules judge it)');
  const dl = config({ 'meshHardening.requireDistrolessProxy': true });
  t.same(failedRules(validate(init, { state: s, config: dl })), ['mesh-distroless-proxy'], 'requireDistrolessProxy: proxyv2:1.24.0 is not distroless');
  t.same(failedRules(validate(pod('istio-init', 'docker.io/istio/proxyv2:1.24.0-distroless'), { state: s, config: dl })), [], 'the -distroless tag passes');
  t.equal(imageTag('gcr.io/x/proxyv2:1.24.0-distroless@sha256:abc'), '1.24.0-distroless');
  t.equal(imageTag('localhost:5000/proxyv2'), '', 'a registry port is not a tag');
});

const service = (ports: Record<string, unknown>[], namespace = 'team'): KObject => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc', namespace }, spec: { selector: { app: 'x' }, ports } });

t.test('mesh-protocol-sniffing: declared protocols; audit by default; pinned to enforce it denies', async (t) => {
  const s = state([ns('team', MESHED), ns('plain', {})]);
  for (const [port, declared] of [
    [{ port: 80, name: 'http-web' }, true],
    [{ port: 80, name: 'grpc-web-ui' }, true],
    [{ port: 443, name: 'HTTPS' }, true],
    [{ port: 8080, name: 'web', appProtocol: 'http' }, true],
    [{ port: 8080, appProtocol: 'kubernetes.io/h2c' }, true],
    [{ port: 53, name: 'dns' }, true],
    [{ port: 5000, protocol: 'UDP' }, true],
    [{ port: 8080, name: 'web' }, false],
    [{ port: 8080 }, false],
    [{ port: 8080, name: 'web', appProtocol: 'custom' }, false],
  ] as const) t.equal(declaredProtocol(port), declared, `${JSON.stringify(port)}: ${declared ? 'declared' : 'sniffed'}`);
  const sniffed = service([{ port: 8080, name: 'web' }]);
  const v = validate(sniffed, { state: s });
  t.equal(v.response.response.allowed, true, 'enforce mode globally, but the rule defaults to audit: admitted');
  t.ok(v.response.response.warnings?.some((w) => w.startsWith('policy mesh-protocol-sniffing: port 8080 (web) declares no protocol')), 'with a warning');
  const pinned = validate(sniffed, { state: s, config: config({ 'rules.mesh-protocol-sniffing.mode': 'enforce' }) });
  t.equal(pinned.response.response.allowed, false, 'rules.<id>.mode enforce overrides the default mode');
  t.same(failedRules(validate(service([{ port: 8080, name: 'web' }], 'plain'), { state: s })), [], 'a namespace outside the mesh is not judged');
});

const ra = (namespace: string, selector?: Record<string, string>): KObject => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'RequestAuthentication',
  metadata: { name: 'jwt', namespace },
  spec: { ...(selector !== undefined ? { selector: { matchLabels: selector } } : {}), jwtRules: [{ issuer: 'https://issuer.example' }] },
});

t.test('advisory findings (RequestAuthentication, auto mTLS off) warn at admission and never deny', async (t) => {
  const s = state([ns('team', MESHED)]);
  for (const c of [config(), config({ 'rules.request-authentication-principal.mode': 'enforce' })]) {
    const v = validate(ra('team'), { state: s, config: c });
    t.equal(v.response.response.allowed, true, 'admitted');
    t.ok(v.response.response.warnings?.some((w) => w.startsWith('policy request-authentication-principal: a RequestAuthentication rejects invalid tokens')), 'with a reminder');
  }
  const mesh: KObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 'enableAutoMtls: false\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n' } };
  const m = validate(mesh, { state: s });
  t.equal(m.response.response.allowed, true, 'auto mTLS off: admitted');
  t.ok(m.response.response.warnings?.some((w) => w.startsWith('policy mesh-auto-mtls: auto mTLS is off')), 'with a reminder to keep a root DestinationRule');
  const on: KObject = { ...mesh, data: { mesh: 'outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n' } };
  t.same(failedRules(validate(on, { state: s })), [], 'auto mTLS on: nothing');
});

// ----------------------------------------------------------------------------- inventory ---

const obj = (apiVersion: string, kind: string, namespace: string, name: string, spec: unknown): KObject => ({ apiVersion, kind, metadata: { name, namespace }, spec });
const rootPa = obj('security.istio.io/v1', 'PeerAuthentication', 'istio-system', 'default', { mtls: { mode: 'STRICT' } });
const rootDr = obj('networking.istio.io/v1', 'DestinationRule', 'istio-system', 'default', { host: '*.local', trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } });
const autoOff: KObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 'enableAutoMtls: false\n' } };
const requireJwt = (namespace: string, selector?: Record<string, string>): KObject =>
  obj('security.istio.io/v1', 'AuthorizationPolicy', namespace, 'require-jwt', { ...(selector !== undefined ? { selector: { matchLabels: selector } } : {}), rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] });
const denyNoJwt = obj('security.istio.io/v1', 'AuthorizationPolicy', 'team', 'deny-no-jwt', { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] });

function mesh(objects: KObject[], served = true, c = config()): string[] {
  const s = state([ns('team', MESHED), ns('audited', { ...MESHED, 'meshguard.dev/mode': 'audit' })]);
  return inventoryFindings(objects, () => served, s, c, BUILTIN_RULES).findings.map((f) => `${f.action} ${f.result.ruleId} ${f.finding.subject.kind} ${f.finding.subject.namespace}/${f.finding.subject.name}`);
}

t.test('scan inventory: mesh-wide findings from the listed objects', async (t) => {
  const rows: [string, KObject[], string[]][] = [
    ['no mesh-wide PeerAuthentication: reported (enforce mode: deny)', [], ['deny mesh-root-strict-mtls PeerAuthentication istio-system/default']],
    ['a mesh-wide STRICT PeerAuthentication: nothing', [rootPa], []],
    ['a PERMISSIVE one does not count', [{ ...rootPa, spec: { mtls: { mode: 'PERMISSIVE' } } }], ['deny mesh-root-strict-mtls PeerAuthentication istio-system/default']],
    ['a STRICT one with a selector does not count', [{ ...rootPa, spec: { selector: { matchLabels: { app: 'a' } }, mtls: { mode: 'STRICT' } } }], ['deny mesh-root-strict-mtls PeerAuthentication istio-system/default']],
    ['auto mTLS off without a root DestinationRule: warned (audit by default)', [rootPa, autoOff], ['warn mesh-auto-mtls ConfigMap istio-system/istio']],
    ['auto mTLS off with a root ISTIO_MUTUAL DestinationRule: nothing', [rootPa, autoOff, rootDr], []],
    ['a root DestinationRule exported to one namespace does not count', [rootPa, autoOff, { ...rootDr, spec: { ...(rootDr['spec'] as object), exportTo: ['.'] } }], ['warn mesh-auto-mtls ConfigMap istio-system/istio']],
    ['a RequestAuthentication alone: warned', [rootPa, ra('team')], ['warn request-authentication-principal RequestAuthentication team/jwt']],
    ['with an ALLOW policy requiring a principal in its namespace: nothing', [rootPa, ra('team', { app: 'a' }), requireJwt('team')], []],
    ['with a mesh-wide one in the root namespace: nothing', [rootPa, ra('team'), requireJwt('istio-system')], []],
    ['with a DENY notRequestPrincipals policy: nothing', [rootPa, ra('team'), denyNoJwt], []],
    ['a policy for other workloads does not cover it', [rootPa, ra('team', { app: 'a' }), requireJwt('team', { app: 'b' })], ['warn request-authentication-principal RequestAuthentication team/jwt']],
    ['a policy for fewer workloads does not cover a namespace-wide one', [rootPa, ra('team'), requireJwt('team', { app: 'a' })], ['warn request-authentication-principal RequestAuthentication team/jwt']],
    ['a policy in another namespace does not cover it', [rootPa, ra('team'), requireJwt('other')], ['warn request-authentication-principal RequestAuthentication team/jwt']],
  ];
  for (const [sentence, objects, expected] of rows) t.same(mesh(objects), expected, sentence);
  t.same(mesh([]), ['deny mesh-root-strict-mtls PeerAuthentication istio-system/default']);
  t.same(mesh([], false), [], 'kinds that could not be listed prove nothing');
  t.same(mesh([], true, config({ 'rules.mesh-root-strict-mtls.enabled': false })), [], 'a disabled rule is not run');
  t.same(mesh([], true, config({ mode: 'audit' })), ['warn mesh-root-strict-mtls PeerAuthentication istio-system/default'], 'global audit: a warning');
  t.same(mesh([rootPa, ra('audited')]), ['warn request-authentication-principal RequestAuthentication audited/jwt']);
});

class Source implements ScanSource {
  readonly data: Record<string, { kind: string; items: KObject[] }>;
  constructor(data: Record<string, { kind: string; items: KObject[] }>) {
    this.data = data;
  }
  async list(req: ListRequest): Promise<ListResponse> {
    const base = req.group === '' ? `/api/${req.version}` : `/apis/${req.group}/${req.version}`;
    const d = this.data[`${base}${req.namespace !== undefined ? `/namespaces/${req.namespace}` : ''}/${req.resource}`];
    if (d === undefined) throw Object.assign(new Error('not found'), { code: 404 });
    return { apiVersion: req.group === '' ? req.version : `${req.group}/${req.version}`, kind: `${d.kind}List`, items: d.items, metadata: {} };
  }
}

t.test('scan: the mesh-wide findings join the per-object ones; advisory reminders stay out', async (t) => {
  const src = new Source({
    '/api/v1/namespaces': { kind: 'Namespace', items: [{ metadata: { name: 'team', labels: MESHED } }, { metadata: { name: 'istio-system' } }] },
    '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations': { kind: 'MutatingWebhookConfiguration', items: [] },
    '/apis/security.istio.io/v1/peerauthentications': { kind: 'PeerAuthentication', items: [] },
    '/apis/security.istio.io/v1/authorizationpolicies': { kind: 'AuthorizationPolicy', items: [] },
    '/apis/security.istio.io/v1/requestauthentications': { kind: 'RequestAuthentication', items: [{ metadata: { name: 'jwt', namespace: 'team' }, spec: {} }] },
  });
  const report = await scanCluster(src, config(), BUILTIN_RULES);
  t.same(
    report.findings.map((f) => `${f.action} ${f.kind} ${f.namespace}/${f.name} [${f.rule}]`),
    ['deny PeerAuthentication istio-system/default [mesh-root-strict-mtls]', 'warn RequestAuthentication team/jwt [request-authentication-principal]'],
    'one finding each, not an extra advisory line for the RequestAuthentication',
  );
  t.match(report.findings[1]?.message, 'no AuthorizationPolicy requires a request principal');
});
