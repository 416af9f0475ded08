// meshguard's configuration: one schema (TypeBox, so JSON Schema), defaults live here, unknown
// keys are errors. The Config type (types.ts) is derived from it; validate.ts applies it.
import { Type, type Static, type TProperties, type TSchema, type TString, type TUnsafe } from '@sinclair/typebox';

function str(description: string, dflt: string, extra?: { pattern?: RegExp }): TString;
function str<const E extends readonly string[]>(description: string, dflt: E[number], extra: { enum: E }): TUnsafe<E[number]>;
function str(description: string, dflt: string, extra: { enum?: readonly string[]; pattern?: RegExp } = {}): TSchema {
  // A plain `enum` (not TypeBox's union of literals) keeps the JSON Schema and its errors simple.
  if (extra.enum !== undefined) return Type.Unsafe({ type: 'string', description, default: dflt, enum: [...extra.enum] });
  return Type.String({ description, default: dflt, ...(extra.pattern === undefined ? {} : { pattern: extra.pattern.source }) });
}
const nullableStr = (description: string): TUnsafe<string | null> => Type.Unsafe({ type: ['string', 'null'], description, default: null });
const int = (description: string, dflt: number, min: number, max: number) => Type.Integer({ minimum: min, maximum: max, description, default: dflt });
const bool = (description: string, dflt: boolean) => Type.Boolean({ description, default: dflt });
const ITEM = Type.String({ description: 'item' });
const VALUE = Type.String({ description: 'value' });
const VALUES = Type.Array(VALUE, { description: 'allowed values' });
const list = <T extends TSchema = typeof ITEM>(description: string, dflt: readonly string[], items?: T) =>
  Type.Array((items ?? ITEM) as T, { description, default: [...dflt] });
/** A section: its keys are fixed, unknown keys are errors, and a missing section is all defaults. */
const obj = <P extends TProperties>(description: string, props: P) => Type.Object(props, { description, additionalProperties: false, default: {} });
/** A map with free keys (matching keyPattern), each value of the same schema. */
const map = <V extends TSchema>(description: string, keyPattern: RegExp, values: V, dflt: Readonly<Record<string, unknown>> = {}): TUnsafe<Record<string, Static<V>>> =>
  Type.Unsafe({ type: 'object', description, additionalProperties: values, propertyNames: { pattern: keyPattern.source }, default: dflt });
/** Any JSON map, passed through unchanged (e.g. the spec of a generated Istio resource). */
const json = (description: string, dflt?: Readonly<Record<string, unknown>>): TUnsafe<Record<string, unknown>> =>
  Type.Unsafe({ type: 'object', description, ...(dflt === undefined ? {} : { default: dflt }) });

/** DNS-1123 label: a namespace name. */
export const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A qualified label/annotation key: optional DNS prefix, then a name of at most 63 characters. */
export const QUALIFIED_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const RULE_ID = /^[a-z0-9]+(-[a-z0-9]+)*$/;
/** The name of a generated resource (a DNS-1123 subdomain). */
const RESOURCE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** A dotted path of identifiers (a ProxyConfig field, an install value). */
const DOTTED_PATH = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const NAMESPACE = Type.String({ pattern: NAMESPACE_NAME.source, description: 'namespace name' });

/** A resource the reconciler creates from configuration: where, and its spec. */
const generated = (kind: string, apiVersion: string) =>
  obj(`a generated ${kind}`, {
    namespaces: list('namespaces to create it in (empty: all meshed namespaces)', []),
    spec: json(`${apiVersion} ${kind} spec`),
  });

export const DEFAULT_EXEMPT_NAMESPACES = [
  'kube-system',
  'kube-public',
  'kube-node-lease',
  'local-path-storage',
  'istio-system',
] as const;

// The root has no default: ajv refuses one there, and loadConfig always passes a map (if only {}).
export const CONFIG_SCHEMA = Type.Object({
  mode: str('enforce denies failing requests; audit allows them with warnings, audit annotations and an audit record', 'enforce', {
    enum: ['enforce', 'audit'],
  }),
  mutation: str('apply: the mutating webhook changes new objects (namespaces into the mesh) in both modes; report: it only reports what it would change (warning, audit annotation and record) (docs/adr/0002)', 'apply', {
    enum: ['apply', 'report'],
  }),
  onError: str('what a rule that throws does in enforce mode: deny (fail closed) or allow with a warning', 'deny', {
    enum: ['deny', 'allow'],
  }),
  server: obj('the HTTPS server', {
    host: str('address to listen on', '127.0.0.1'),
    port: int('TCP port (0 picks a free one)', 8443, 0, 65535),
    certFile: nullableStr('PEM serving certificate; with keyFile, used and reloaded on change. Unset: generate into certDir'),
    keyFile: nullableStr('PEM private key for certFile'),
    caFile: nullableStr('PEM CA bundle that signed certFile (informational: expiry metric)'),
    certDir: str('where generated certificates are written when certFile/keyFile are unset', 'certs'),
    certSans: list('extra DNS names or IPs for a generated certificate', []),
    tlsMinVersion: str('lowest TLS version accepted', 'TLSv1.2', { enum: ['TLSv1.2', 'TLSv1.3'] }),
    clientCaFile: nullableStr('PEM CA bundle: /validate and /mutate then require a client certificate signed by it (the apiserver authenticates with an AdmissionConfiguration kubeconfig, docs/install.md); probes and /metrics need none. Unset: no client certificates'),
    // An UPDATE review carries object and oldObject. The apiserver caps a request body at 3 MiB,
    // so each object is at most about 1.5 MiB once both must fit; JSON re-encoding by the apiserver
    // (escapes, the review envelope, userInfo) can roughly double that. 6 MiB holds two 1.5 MiB
    // objects with 2x headroom and matches Istio's own injector limit; anything larger gets 413.
    bodyLimitBytes: int('largest accepted request body in bytes', 6 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    // At most the webhook's timeout (the chart's timeoutSeconds is 5): the apiserver gives up on a
    // call after it, so a connection kept longer only holds a slot for an answer nobody reads.
    requestTimeoutMs: int("time allowed to receive a whole request (slow-client protection; keep at or below the webhook's timeoutSeconds)", 5_000, 1_000, 120_000),
    headersTimeoutMs: int('time allowed to finish the TLS handshake and receive the request headers (below requestTimeoutMs)', 4_000, 1_000, 120_000),
    // Go's HTTP client (the apiserver's) keeps idle connections for 90 s; closing ours later than
    // that means the client always closes first and never races a server-side close.
    keepAliveTimeoutMs: int('idle keep-alive time; keep above 90 s (the apiserver client idles 90 s)', 95_000, 1_000, 600_000),
    drainSeconds: int('on SIGTERM, seconds to keep serving with readiness false before closing', 3, 0, 120),
    // Load shedding (src/webhook/overload.ts): past any bound, new admission requests get 503
    // MG_OVERLOADED before their body is read, so memory stays bounded and the apiserver applies
    // the failure policy instead of timing out. Probes and metrics (GET) are never shed.
    maxInFlight: int('most admission requests in flight at once; more get 503 MG_OVERLOADED', 256, 1, 100_000),
    maxInFlightBytes: int('most request body bytes received and held at once (counted as they arrive; shared fairly between client addresses)', 64 * 1024 * 1024, 1024, 16 * 1024 * 1024 * 1024),
    // A body slower than this (after the grace) is cut with 408 MG_TIMEOUT: a connection that
    // trickles a body holds an in-flight slot while sending almost nothing. The apiserver sends a
    // whole review in milliseconds; 16 KiB/s after 2 s still lets a 6 MiB body take far longer
    // than requestTimeoutMs, so only trickles are cut.
    minBodyBytesPerSecond: int('slowest accepted request body in bytes per second, after bodyRateGraceMs (0: off)', 16 * 1024, 0, 1024 * 1024 * 1024),
    bodyRateGraceMs: int('time from the request headers before the body rate is checked (ms)', 2_000, 100, 120_000),
    maxEventLoopDelayMs: int('shed new admission requests while the event loop lags more than this (ms; 0: off)', 1000, 0, 60_000),
    // The apiserver sends its timeout as ?timeout=5s (src/webhook/deadline.ts).
    deadlineMarginPercent: int("share of the apiserver's ?timeout= kept for answering: a request whose evaluation would start later gets the mode's answer unevaluated", 20, 0, 90),
  }),
  cluster: obj('the Kubernetes API connection (namespace labels and Istio revisions come from watch-backed caches)', {
    kubeconfig: nullableStr('kubeconfig file; unset and inCluster false: no cluster (namespaces from configuration only)'),
    inCluster: bool('use the pod service account (in-cluster configuration)', false),
    resyncSeconds: int('relist period of the caches', 600, 10, 86_400),
    staleAfterSeconds: int('readiness turns false, and admission requests get 503 MG_CACHE_STALE (the failure policy applies), once nothing has been heard on a cache watch for this long: down or stalled (each watch is ended by the apiserver and renewed every half of it)', 60, 2, 3_600),
    discoverRevisions: bool('discover installed Istio revisions and tags from MutatingWebhookConfigurations', true),
  }),
  selfManagedCerts: obj('meshguard manages its own CA and serving certificate in a Secret and patches the caBundle into its webhook configurations (needs cluster access)', {
    enabled: bool('turn self-management on (the chart default)', false),
    secretName: str('Secret holding ca.crt, ca.key, tls.crt, tls.key', 'meshguard-tls'),
    webhookConfigurationName: str('name of the Mutating- and ValidatingWebhookConfiguration to patch', 'meshguard'),
    serviceName: str('Service name the certificate must cover (<svc>.<ns>.svc)', 'meshguard'),
    caDays: int('CA lifetime in days', 3650, 2, 36_500),
    leafDays: int('serving certificate lifetime in days', 365, 1, 3_650),
    renewBeforeDays: int('renew the serving certificate (and the CA) this many days before expiry', 30, 1, 3_000),
    checkIntervalSeconds: int('how often expiry is checked', 3600, 1, 86_400),
  }),
  webhookArming: obj("meshguard's webhooks are registered failing open (Ignore); meshguard switches them to failurePolicy while a ready meshguard answers behind them with a trusted caBundle, and back to Ignore when none does (needs cluster access; docs/adr/0005)", {
    enabled: bool('arm and disarm the webhooks (the chart turns it on)', false),
    failurePolicy: str('failurePolicy of an armed webhook (the chart: Fail in enforce mode, Ignore in audit mode)', 'Fail', { enum: ['Fail', 'Ignore'] }),
    webhookConfigurationName: str('name of the Mutating- and ValidatingWebhookConfiguration to arm', 'meshguard'),
    intervalSeconds: int('seconds between checks (a helm upgrade resets the rendered Ignore; the next check re-arms)', 5, 1, 3600),
  }),
  exceptions: obj('MeshguardExceptions (meshguard.dev/v1alpha1): admin-only, time-bound exceptions from rules for named or selected objects (docs/exceptions.md)', {
    watch: bool('watch them in serve (needs cluster access and the CRD; the chart turns it on)', false),
  }),
  reconciler: obj('keeps the per-namespace hardening resources in every meshed namespace (needs cluster access and Istio CRDs)', {
    enabled: bool('run the reconciler in serve (the chart turns it on)', false),
    dryRun: bool('log what would be created, changed or deleted, and change nothing', false),
    resyncSeconds: int('full reconcile period', 300, 5, 86_400),
    leaseName: str('Lease (in meshguardNamespace) that elects the one reconciling replica', 'meshguard-reconciler'),
    leaseDurationSeconds: int('how long a leader holds the Lease without renewing it', 15, 2, 600),
    renewSeconds: int('how often the leader renews (and followers retry)', 5, 1, 300),
    allowSameNamespace: bool('also create an allow-same-namespace AuthorizationPolicy next to default-deny', true),
    serviceEntries: map('ServiceEntries to create, by name: {namespaces: [] (empty: every meshed namespace), spec: {...}}', RESOURCE_NAME, generated('ServiceEntry', 'networking.istio.io/v1')),
    authorizationPolicies: map('extra AuthorizationPolicies to create, by name: {namespaces: [], spec: {...}}', RESOURCE_NAME, generated('AuthorizationPolicy', 'security.istio.io/v1')),
    // Kubernetes NetworkPolicy beside the mesh (docs/reconciler-and-scan.md, docs/defense-in-depth.md).
    networkPolicies: obj('Kubernetes NetworkPolicies in every meshed namespace: default-deny, ingress from configured sources, egress only inside the cluster (needs a CNI that enforces NetworkPolicy)', {
      enabled: bool('reconcile the NetworkPolicy set (the chart\'s hardened profile turns it on)', false),
      monitoringNamespaces: list('namespaces whose pods may reach every pod of a meshed namespace (metrics scraping)', [], NAMESPACE),
      extra: map(
        'extra NetworkPolicies to create, by name: {namespaces: [] (empty: every meshed namespace), spec: {...}}, e.g. an ipBlock egress to a database outside the cluster',
        RESOURCE_NAME,
        generated('NetworkPolicy', 'networking.k8s.io/v1'),
      ),
    }),
  }),
  scan: obj('periodic scan of existing objects in serve (metrics meshguard_scan_violations)', {
    intervalSeconds: int('seconds between scans; 0 turns the periodic scan off', 0, 0, 604_800),
    policyReports: bool('after each scan, write wgpolicyk8s.io/v1alpha2 PolicyReports (one per namespace) and a ClusterPolicyReport (needs their CRDs)', false),
    openReports: bool('after each scan, write openreports.io/v1alpha1 Reports and a ClusterReport (needs their CRDs)', false),
  }),
  metricsEnabled: bool('serve GET /metrics on the HTTPS webhook port (turn off with metrics.port set to keep /metrics off the port the apiserver calls)', true),
  metrics: obj('the optional plain-HTTP metrics listener', {
    port: int('plain-HTTP port serving only GET /metrics; -1: off (the default), 0: any free port', -1, -1, 65535),
    host: str('address of the metrics listener', '127.0.0.1'),
  }),
  logLevel: str('log level', 'info', { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }),
  auditLogFile: nullableStr('file for structured audit records (JSON lines); unset: standard output'),
  meshguardNamespace: str("meshguard's own namespace (always exempt)", 'meshguard', { pattern: NAMESPACE_NAME }),
  exemptNamespaces: list('namespaces no rule applies to, matched on kubernetes.io/metadata.name', DEFAULT_EXEMPT_NAMESPACES, NAMESPACE),
  gatewayNamespaces: list('gateway namespaces, exempt like the system namespaces', [], NAMESPACE),
  adminGroups: list('groups (request.userInfo.groups) allowed to set meshguard.dev/ labels and annotations', ['system:masters']),
  adminUsers: list('users (request.userInfo.username) allowed to set meshguard.dev/ labels and annotations', []),
  injection: obj('the label the mutation adds to new namespaces that carry no mesh label', {
    mode: str('sidecar: istio-injection=enabled; revision: istio.io/rev=<revision>; ambient: istio.io/dataplane-mode=ambient', 'sidecar', {
      enum: ['sidecar', 'revision', 'ambient'],
    }),
    revision: str('the revision for mode revision', '', { pattern: /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$/ }),
  }),
  ambient: obj('ambient mode', {
    allowed: bool('namespaces labelled istio.io/dataplane-mode=ambient count as meshed', true),
  }),
  revisions: list('Istio revisions and tags known to exist (offline); in a cluster, discovered revisions are added', [], Type.String({ pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$', description: 'revision name' })),
  hardening: obj('what the mutation adds to new namespaces (never overwriting a value that is present)', {
    labels: map('labels', QUALIFIED_KEY, VALUE),
    annotations: map('annotations', QUALIFIED_KEY, VALUE, { 'meshguard.dev/hardened': 'true' }),
  }),
  captureBypass: obj('workload-capture-bypass settings', {
    allow: map('per annotation, the values that are allowed (e.g. traffic.sidecar.istio.io/excludeOutboundPorts: ["5432"]); "*" allows any value', QUALIFIED_KEY, VALUES),
  }),
  proxyConfig: obj('workload-capture-bypass: the proxy.istio.io/config annotation, judged field by field (docs/rules.md, ProxyConfig fields, has the built-in table)', {
    allow: map(
      'per ProxyConfig field (dotted JSON path, e.g. tracing.sampling or proxyMetadata.MY_VAR), the values allowed; replaces the built-in list of that field; "*" allows any value, [] none; enums by name',
      DOTTED_PATH,
      VALUES,
    ),
    unknownFields: str('a field (or proxyMetadata key) meshguard does not know: deny, or allow (Istio ignores fields its ProxyConfig lacks)', 'deny', { enum: ['deny', 'allow'] }),
  }),
  istioInstall: obj('mesh-wide install settings: what meshguard assumes the injector applies to every pod, and which capture narrowing the platform allows', {
    injectorValues: json(
      "the sidecar injector's values (the `values` key of the istio-sidecar-injector ConfigMap, as a map; {}: Istio's defaults); a pod annotation equal to the mesh-wide value the injector stamps is not a tenant bypass",
      {},
    ),
    allow: map(
      'per install value path (e.g. global.proxy.excludeIPRanges, meshConfig.defaultConfig.proxyMetadata.ISTIO_DUAL_STACK), the values allowed mesh-wide; "*" any value',
      DOTTED_PATH,
      VALUES,
    ),
  }),
  istioProxyImages: list('images allowed for Istio\'s own istio-init/istio-validation/istio-proxy containers (regular expressions, matched against the whole image)', ['^(.+/)?proxyv2(:[^/]+)?(@sha256:[a-f0-9]{64})?$']),
  istiodUsers: list("usernames (request.userInfo.username) of istiod, whose gateway and waypoint Deployments (owned by a Gateway API Gateway) are admitted as Istio's own", [
    'system:serviceaccount:istio-system:istiod',
  ]),
  controllerUsers: list("usernames of the controllers that turn istiod's gateway and waypoint Deployments into ReplicaSets and Pods", [
    'system:serviceaccount:kube-system:deployment-controller',
    'system:serviceaccount:kube-system:replicaset-controller',
    'system:kube-controller-manager',
  ]),
  istioAdminNamespaces: list('namespaces where EnvoyFilter, WasmPlugin, TrafficExtension and ProxyConfig may be created', ['istio-system'], NAMESPACE),
  serviceEntries: obj('service-entry-wildcard settings', {
    allowedWildcardHosts: list('wildcard hosts (e.g. *.googleapis.com) that ServiceEntries may use', []),
    addressLimit: obj('how many addresses one ServiceEntry’s spec.addresses, or one VirtualService’s tcp/tls destinationSubnets, may cover together (every IP and CIDR united), as a prefix length per family', {
      ipv4: int('IPv4: 16 allows 65,536 addresses (one /16) in any split', 16, 1, 32),
      ipv6: int('IPv6: 48 allows 2^80 addresses (one /48) in any split', 48, 1, 128),
    }),
  }),
  meshHardening: obj('mesh-wide hardening checks that only apply where the platform asks for them', {
    requireCni: bool('the Istio CNI must be in use: an injected istio-init container (which needs NET_ADMIN) is a violation of mesh-istio-cni', false),
    requireDistrolessProxy: bool('injected istio-proxy containers must use the distroless image (mesh-distroless-proxy)', false),
  }),
  unknownNamespace: str('a workload whose namespace is not known (offline, or not yet in the cache): deny treats it as not meshed', 'deny', {
    enum: ['deny', 'allow'],
  }),
  rules: map(
    'per-rule settings by rule id',
    RULE_ID,
    obj('rule settings', {
      enabled: bool('evaluate this rule', true),
      mode: str("inherit the global/namespace mode (or the rule's default mode, audit for the opinionated rules), or pin this rule to enforce or audit", 'inherit', {
        enum: ['inherit', 'enforce', 'audit'],
      }),
    }),
  ),
}, { description: 'meshguard configuration', additionalProperties: false });
