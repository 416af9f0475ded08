// Webhook arming (docs/adr/0005): which failurePolicy each webhook gets, from readiness, the
// Service's endpoints and the caBundle; the loop's writes against an in-memory store of the two
// configurations (the API server part is exercised by test/e2e/install.test.ts).
import t from 'tap';
import { generateBundle } from '../../src/jobs/certs/selfsigned.ts';
import { armingPatch, bundleTrusts, followingWebhooks, serviceReady, type ArmableConfiguration, type EndpointLike } from '../../src/jobs/arming/plan.ts';
import type { ArmingCluster } from '../../src/jobs/arming/adapter.ts';
import { startWebhookArming } from '../../src/jobs/arming/loop.ts';
import { webhookConfigurations } from '../../src/policies/webhook-config.ts';
import type { JsonPatchOp, WebhookKind } from '../../src/kube/webhook-patch.ts';
import { RULES } from '../../src/policies/registry.ts';
import fastJsonPatch from 'fast-json-patch';

const good = await generateBundle({ sans: ['meshguard.meshguard.svc'] });
const other = await generateBundle({ sans: ['meshguard.meshguard.svc'] });
const b64 = (pem: string): string => Buffer.from(pem).toString('base64');
const followers = followingWebhooks(RULES);

t.test('the webhooks that follow the mode are the generated ones whose policy changes with it; the mesh-config webhook is not one', async (t) => {
  t.ok(followers.has('validate.meshguard.dev'));
  t.ok(followers.has('mutate.meshguard.dev'));
  t.notOk(followers.has('validate-mesh-config.meshguard.dev'), 'the mesh-config webhook always fails open');
});

t.test('a caBundle trusts the served certificate only when it holds the CA that issued it', async (t) => {
  const rows: [string, string | undefined, string, boolean][] = [
    ['the issuing CA', b64(good.caCert), good.cert, true],
    ['the issuing CA after another CA (a rollover bundle)', b64(other.caCert + good.caCert), good.cert, true],
    ['another CA', b64(other.caCert), good.cert, false],
    ['no caBundle (as the chart renders it)', undefined, good.cert, false],
    ['an empty caBundle', '', good.cert, false],
    ['garbage', b64('not a certificate'), good.cert, false],
    ['no certificate served yet', b64(good.caCert), '', false],
  ];
  for (const [name, bundle, cert, want] of rows) t.equal(bundleTrusts(bundle, cert), want, name);
});

t.test('a ready meshguard answers through the Service only from a ready endpoint, counting this replica only while it is ready', async (t) => {
  const rows: [string, EndpointLike[], boolean, boolean][] = [
    ['no endpoints (no pod ever started)', [], true, false],
    ['only unready endpoints (crash-looping or starting)', [{ ready: false, pod: 'a' }, { ready: false, pod: 'b' }], true, false],
    ['this replica, ready, published ready', [{ ready: true, pod: 'me' }], true, true],
    ['this replica draining, still published ready', [{ ready: true, pod: 'me' }], false, false],
    ['this replica draining, another ready', [{ ready: true, pod: 'me' }, { ready: true, pod: 'b' }], false, true],
    ['this replica ready but not yet published', [{ ready: false, pod: 'me' }], true, false],
  ];
  for (const [name, eps, selfReady, want] of rows) t.equal(serviceReady(eps, { pod: 'me', ready: selfReady }), want, name);
});

function rendered(caBundle?: string): { mutating: ArmableConfiguration; validating: ArmableConfiguration } {
  const c = webhookConfigurations({
    client: { service: { namespace: 'meshguard', name: 'meshguard', port: 443 } },
    ...(caBundle !== undefined ? { caBundle } : {}),
    failurePolicy: 'Ignore',
    exemptNamespaces: [],
    meshguardNamespace: 'meshguard',
    rules: RULES,
  });
  return { mutating: c.mutating as ArmableConfiguration, validating: c.validating as ArmableConfiguration };
}

const policies = (c: ArmableConfiguration | undefined): Record<string, string | undefined> => Object.fromEntries((c?.webhooks ?? []).map((w) => [w.name, w.failurePolicy]));

t.test('the patch arms only followers whose caBundle trusts the served certificate, and tests what it read', async (t) => {
  const { validating } = rendered(b64(good.caCert));
  const trusts = (b: string | undefined): boolean => bundleTrusts(b, good.cert);
  const ops = armingPatch(validating, { armed: 'Fail', followers, backendReady: true, trusts });
  const after = fastJsonPatch.applyPatch(structuredClone(validating), ops as fastJsonPatch.Operation[]).newDocument;
  t.equal(policies(after)['validate.meshguard.dev'], 'Fail', 'armed');
  t.equal(policies(after)['validate-mesh-config.meshguard.dev'], 'Ignore', 'the mesh-config webhook stays Ignore');
  t.ok(ops.some((o) => o.op === 'test' && o.path.endsWith('/failurePolicy') && o.value === 'Ignore'), 'guards the policy as read');
  t.same(armingPatch(after, { armed: 'Fail', followers, backendReady: true, trusts }), [], 'nothing left to do');
  const back = armingPatch(after, { armed: 'Fail', followers, backendReady: false, trusts });
  t.equal(policies(fastJsonPatch.applyPatch(structuredClone(after), back as fastJsonPatch.Operation[]).newDocument)['validate.meshguard.dev'], 'Ignore', 'no ready meshguard: back to Ignore');
  const untrusted = rendered(b64(other.caCert)).validating;
  t.same(armingPatch(untrusted, { armed: 'Fail', followers, backendReady: true, trusts }), [], 'a caBundle that does not trust the served certificate is never armed');
});

/** The two configurations in memory, patched with real JSON patch semantics (a failed test throws 422). */
function memoryCluster(init: { mutating: ArmableConfiguration; validating: ArmableConfiguration }, endpoints: EndpointLike[]): ArmingCluster & { store: Record<WebhookKind, ArmableConfiguration | undefined>; endpointsNow: EndpointLike[] } {
  const store: Record<WebhookKind, ArmableConfiguration | undefined> = { mutating: structuredClone(init.mutating), validating: structuredClone(init.validating) };
  const self = {
    store,
    endpointsNow: endpoints,
    async read(kind: WebhookKind) {
      return structuredClone(store[kind]);
    },
    async patch(kind: WebhookKind, ops: JsonPatchOp[]) {
      try {
        store[kind] = fastJsonPatch.applyPatch(structuredClone(store[kind]), ops as fastJsonPatch.Operation[], true).newDocument;
      } catch {
        throw Object.assign(new Error('test failed'), { code: 422 });
      }
    },
    async endpoints() {
      return self.endpointsNow;
    },
  };
  return self;
}

const quiet = { info: () => undefined, warn: () => undefined };

t.test('the loop arms once this replica is ready and published, keeps the policy while another replica answers, and disarms when the last one drains', async (t) => {
  const c = memoryCluster(rendered(b64(good.caCert)), [{ ready: false, pod: 'me' }]);
  let ready = false;
  const arming = startWebhookArming({ cluster: c, armed: 'Fail', followers, pod: 'me', selfReady: () => ready, servedCert: () => good.cert, intervalMs: 3_600_000, log: quiet });
  t.equal(await arming.syncNow(), false, 'not ready: stays Ignore');
  t.equal(policies(c.store.validating)['validate.meshguard.dev'], 'Ignore');
  ready = true;
  t.equal(await arming.syncNow(), false, 'ready but the Service does not route to it yet: stays Ignore');
  c.endpointsNow = [{ ready: true, pod: 'me' }];
  t.equal(await arming.syncNow(), true, 'ready and published: armed');
  t.equal(policies(c.store.validating)['validate.meshguard.dev'], 'Fail');
  t.equal(policies(c.store.mutating)['mutate.meshguard.dev'], 'Fail');
  // helm upgrade re-applies the rendered Ignore; the next check re-arms.
  c.store.validating = structuredClone(rendered(b64(good.caCert)).validating);
  t.equal(await arming.syncNow(), true, 're-armed after an upgrade reset it');
  c.endpointsNow = [{ ready: true, pod: 'me' }, { ready: true, pod: 'b' }];
  ready = false;
  t.equal(await arming.syncNow(), true, 'this replica unready, another answers: stays armed');
  c.endpointsNow = [{ ready: true, pod: 'me' }];
  await arming.stop();
  t.equal(policies(c.store.validating)['validate.meshguard.dev'], 'Ignore', 'the last replica draining sets Ignore');
  t.equal(policies(c.store.mutating)['mutate.meshguard.dev'], 'Ignore');
});

t.test('with a URL clientConfig (one process, no Service) the loop arms on its own readiness and disarms on stop', async (t) => {
  const c = webhookConfigurations({ client: { url: 'https://127.0.0.1:1' }, caBundle: b64(good.caCert), failurePolicy: 'Ignore', exemptNamespaces: [], meshguardNamespace: 'm', rules: RULES });
  const mem = memoryCluster({ mutating: c.mutating as ArmableConfiguration, validating: c.validating as ArmableConfiguration }, []);
  const arming = startWebhookArming({ cluster: mem, armed: 'Fail', followers, pod: 'me', selfReady: () => true, servedCert: () => good.cert, intervalMs: 3_600_000, log: quiet });
  t.equal(await arming.syncNow(), true);
  t.equal(policies(mem.store.validating)['validate.meshguard.dev'], 'Fail');
  await arming.stop();
  t.equal(policies(mem.store.validating)['validate.meshguard.dev'], 'Ignore');
});

t.test('configurations that do not exist (uninstalled) are left alone', async (t) => {
  const mem = memoryCluster(rendered(b64(good.caCert)), [{ ready: true, pod: 'me' }]);
  mem.store.mutating = undefined;
  mem.store.validating = undefined;
  const arming = startWebhookArming({ cluster: mem, armed: 'Fail', followers, pod: 'me', selfReady: () => true, servedCert: () => good.cert, intervalMs: 3_600_000, log: quiet });
  t.equal(await arming.syncNow(), true, 'nothing to arm');
  await arming.stop();
  t.same(mem.store, { mutating: undefined, validating: undefined });
});
