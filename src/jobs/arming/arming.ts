// Webhook arming (docs/adr/0005-webhooks-fail-open-until-ready.md): the chart renders every
// webhook with failurePolicy Ignore; meshguard switches the webhooks that follow the mode to their
// configured policy (Fail in enforce mode) only while a ready meshguard answers behind them and
// their caBundle trusts the certificate meshguard serves, and switches them back to Ignore when
// none does (the last replica draining, every replica unready). A configuration that nothing
// answers therefore never fails closed because of an install, an image that never pulls or a
// scale-down; a crash-loop after arming stays fail-closed by design (the ADR says why).
//
// Pure plan (which webhooks get which policy), an adapter to the API server (read, JSON patch with
// `test` guards, EndpointSlices of the Service), and a loop that re-checks on a timer.
import { X509Certificate } from 'node:crypto';
import { AdmissionregistrationV1Api, DiscoveryV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { ListWatchLog } from '../../kube/list-watch.ts';
import { webhookConfigurations, type FailurePolicy } from '../../policies/webhook-config.ts';
import type { JsonPatchOp, WebhookKind } from '../../kube/webhook-patch.ts';
import { statusCode } from '../../kube/errors.ts';

// ------------------------------------------------------------------------------ pure core ---

export interface ArmableWebhook {
  readonly name?: string | undefined;
  readonly failurePolicy?: string | undefined;
  readonly clientConfig?: { readonly caBundle?: string | undefined; readonly url?: string | undefined; readonly service?: { readonly namespace?: string; readonly name?: string } | undefined } | undefined;
}

export interface ArmableConfiguration {
  readonly webhooks?: readonly ArmableWebhook[] | undefined;
}

export interface ArmingInput {
  /** The policy of an armed webhook (Fail in enforce mode). */
  readonly armed: FailurePolicy;
  /** Names of the webhooks that follow the mode; the others (the mesh-config webhook) stay as rendered. */
  readonly followers: ReadonlySet<string>;
  /** A ready meshguard answers calls to these webhooks. */
  readonly backendReady: boolean;
  /** Whether a webhook's caBundle (base64 PEM) trusts the certificate meshguard serves. */
  readonly trusts: (caBundleBase64: string | undefined) => boolean;
}

/** The failurePolicy a follower webhook should have now. */
export function desiredPolicy(w: ArmableWebhook, i: ArmingInput): FailurePolicy {
  return i.backendReady && i.trusts(w.clientConfig?.caBundle) ? i.armed : 'Ignore';
}

/**
 * JSON patch setting each follower's failurePolicy where it differs; each change first tests the
 * webhook's name and its policy as read, so a concurrent writer (another replica, helm upgrade)
 * makes the patch fail instead of landing on the wrong element. Empty: nothing to change.
 */
export function armingPatch(config: ArmableConfiguration, i: ArmingInput): JsonPatchOp[] {
  const ops: JsonPatchOp[] = [];
  (config.webhooks ?? []).forEach((w, n) => {
    if (w.name === undefined || !i.followers.has(w.name)) return;
    const want = desiredPolicy(w, i);
    if (w.failurePolicy === want) return;
    ops.push({ op: 'test', path: `/webhooks/${n}/name`, value: w.name });
    if (w.failurePolicy !== undefined) ops.push({ op: 'test', path: `/webhooks/${n}/failurePolicy`, value: w.failurePolicy });
    ops.push({ op: 'add', path: `/webhooks/${n}/failurePolicy`, value: want });
  });
  return ops;
}

/** The Service the webhooks call (the first follower with a service clientConfig), if any. */
export function serviceOf(configs: readonly (ArmableConfiguration | undefined)[], followers: ReadonlySet<string>): { namespace: string; name: string } | undefined {
  for (const c of configs) {
    for (const w of c?.webhooks ?? []) {
      const s = w.clientConfig?.service;
      if (w.name !== undefined && followers.has(w.name) && s?.namespace !== undefined && s.name !== undefined) return { namespace: s.namespace, name: s.name };
    }
  }
  return undefined;
}

export interface EndpointLike {
  readonly ready: boolean;
  /** Pod name (targetRef.name), when the endpoint is a pod. */
  readonly pod?: string | undefined;
}

/**
 * Whether a ready meshguard answers through the Service: an endpoint the Service routes to that is
 * ready, counting this replica's own endpoint only while this replica is ready itself (a draining
 * replica is still listed ready until the endpoints controller catches up).
 */
export function serviceReady(endpoints: readonly EndpointLike[], self: { readonly pod: string; readonly ready: boolean }): boolean {
  return endpoints.some((e) => e.ready && (e.pod !== self.pod || self.ready));
}

/** Whether a base64 PEM bundle holds a CA that issued `servedCertPem`. */
export function bundleTrusts(caBundleBase64: string | undefined, servedCertPem: string): boolean {
  if (caBundleBase64 === undefined || caBundleBase64 === '' || servedCertPem === '') return false;
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(servedCertPem);
  } catch {
    return false;
  }
  const pems = Buffer.from(caBundleBase64, 'base64').toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return pems.some((p) => {
    try {
      const ca = new X509Certificate(p);
      return leaf.checkIssued(ca) && leaf.verify(ca.publicKey);
    } catch {
      return false;
    }
  });
}

// ------------------------------------------------------------------------------ adapter ---

export interface ArmingCluster {
  read(kind: WebhookKind): Promise<ArmableConfiguration | undefined>;
  patch(kind: WebhookKind, ops: JsonPatchOp[]): Promise<void>;
  /** The endpoints of a Service (all its EndpointSlices). */
  endpoints(namespace: string, service: string): Promise<EndpointLike[]>;
}


export function kubeArmingCluster(kc: KubeConfig, name: string): ArmingCluster {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);
  return {
    async read(kind) {
      try {
        return kind === 'mutating' ? await api.readMutatingWebhookConfiguration({ name }) : await api.readValidatingWebhookConfiguration({ name });
      } catch (err) {
        if (statusCode(err) === 404) return undefined;
        throw err;
      }
    },
    async patch(kind, body) {
      const req = { name, body, fieldManager: 'meshguard' };
      if (kind === 'mutating') await api.patchMutatingWebhookConfiguration(req, jsonPatch);
      else await api.patchValidatingWebhookConfiguration(req, jsonPatch);
    },
    async endpoints(namespace, service) {
      const list = await discovery.listNamespacedEndpointSlice({ namespace, labelSelector: `kubernetes.io/service-name=${service}` });
      return list.items.flatMap((s) => (s.endpoints ?? []).map((e) => ({ ready: e.conditions?.ready === true, pod: e.targetRef?.kind === 'Pod' ? e.targetRef.name : undefined })));
    },
  };
}

// ------------------------------------------------------------------------------ loop ---

export interface ArmingOptions {
  readonly cluster: ArmingCluster;
  readonly armed: FailurePolicy;
  readonly followers: ReadonlySet<string>;
  /** This replica's pod name (its hostname in a pod). */
  readonly pod: string;
  /** This replica is ready to admit (readiness checks pass, not draining). */
  readonly selfReady: () => boolean;
  /** PEM of the certificate this replica serves now. */
  readonly servedCert: () => string;
  readonly intervalMs: number;
  readonly log: ListWatchLog;
  readonly onChange?: (kind: WebhookKind, armed: boolean) => void;
}

export interface WebhookArming {
  /** One pass: read, decide, patch. Returns whether the followers are armed afterwards. */
  syncNow(): Promise<boolean>;
  /** Stop the timer, then one last pass (this replica is no longer ready by then). */
  stop(): Promise<void>;
}

const KINDS: readonly WebhookKind[] = ['mutating', 'validating'];

export function startWebhookArming(o: ArmingOptions): WebhookArming {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> | undefined;
  let lastArmed: boolean | undefined;

  const pass = async (): Promise<boolean> => {
    const configs = await Promise.all(KINDS.map((k) => o.cluster.read(k)));
    const svc = serviceOf(configs, o.followers);
    const selfReady = !stopped && o.selfReady();
    // A URL clientConfig (development, tests) points at this process; a Service at every replica.
    const backendReady = svc === undefined ? selfReady : serviceReady(await o.cluster.endpoints(svc.namespace, svc.name), { pod: o.pod, ready: selfReady });
    const cert = o.servedCert();
    const input: ArmingInput = { armed: o.armed, followers: o.followers, backendReady, trusts: (b) => bundleTrusts(b, cert) };
    let armed = backendReady;
    for (const [n, kind] of KINDS.entries()) {
      for (let attempt = 1; ; attempt++) {
        const c = attempt === 1 ? configs[n] : await o.cluster.read(kind);
        if (c === undefined) break;
        const ops = armingPatch(c, input);
        armed &&= (c.webhooks ?? []).every((w) => w.name === undefined || !o.followers.has(w.name) || desiredPolicy(w, input) === o.armed);
        if (ops.length === 0) break;
        try {
          await o.cluster.patch(kind, ops);
          o.log.info({ kind, backendReady, ops: ops.filter((p) => p.op === 'add').length }, backendReady ? 'webhooks armed' : 'webhooks set to fail open: no ready meshguard answers');
          o.onChange?.(kind, backendReady);
          break;
        } catch (err) {
          // 422: a `test` failed (changed since read); 409: a conflict. Re-read and try again.
          const code = statusCode(err);
          if ((code !== 422 && code !== 409) || attempt >= 4) throw err;
        }
      }
    }
    if (armed !== lastArmed) o.log.info({ armed, backendReady }, armed ? `webhooks follow failurePolicy ${o.armed}` : 'webhooks fail open (Ignore)');
    lastArmed = armed;
    return armed;
  };

  const syncNow = (): Promise<boolean> => {
    running ??= pass().finally(() => (running = undefined));
    return running;
  };

  const tick = (): void => {
    if (stopped) return;
    syncNow()
      .catch((err: unknown) => o.log.warn({ err: (err as Error).message }, 'webhook arming: check failed; retrying'))
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, o.intervalMs).unref();
      });
  };
  tick();

  return {
    syncNow,
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await running?.catch(() => undefined);
      try {
        await pass();
      } catch (err) {
        o.log.warn({ err: (err as Error).message }, 'webhook arming: last check on shutdown failed');
      }
    },
  };
}

/** Names of the webhooks whose failurePolicy follows the mode (found by generating both ways). */
export function followingWebhooks(rules: Parameters<typeof webhookConfigurations>[0]['rules']): Set<string> {
  const base = { client: { url: 'https://x' }, timeoutSeconds: 5, exemptNamespaces: [], meshguardNamespace: 'x', rules };
  const names = (p: FailurePolicy): Map<string, string> => {
    const c = webhookConfigurations({ ...base, failurePolicy: p });
    return new Map([c.mutating, c.validating].flatMap((x) => (x['webhooks'] as { name: string; failurePolicy: string }[]).map((w) => [w.name, w.failurePolicy])));
  };
  const fail = names('Fail');
  const ignore = names('Ignore');
  return new Set([...fail.keys()].filter((n) => fail.get(n) !== ignore.get(n)));
}
