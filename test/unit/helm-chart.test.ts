// The Helm chart, rendered by the real helm binary (built from the pinned Go module by
// test/e2e/cluster/build.ts): lint, deterministic output, the schema refusing bad values, the
// restricted Pod Security profile, RBAC without wildcards, and webhook configurations equal to
// what webhookConfigurations() generates from the rule registry for the same inputs.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { CHART_DIR, expectedFiles, SCHEMA_FILE } from '../../tools/sync-chart.ts';
import { webhookConfigurations, type FailurePolicy } from '../../src/policies/webhook-config.ts';
import { loadConfig } from '../../src/config/load.ts';
import { toJsonSchema } from '../../src/config/validate.ts';
import { CONFIG_SCHEMA, DEFAULT_EXEMPT_NAMESPACES } from '../../src/config/schema.ts';
import { RULE_IDS, RULES } from '../../src/policies/registry.ts';
import { ensureBinaries } from '../e2e/cluster/build.ts';
import { ROOT } from '../helpers/review.ts';

// The first build of helm (cold Go caches) takes minutes; cached, this file takes seconds.
t.setTimeout(60 * 60 * 1000);

const { helm } = await ensureBinaries();
const home = mkdtempSync(join(tmpdir(), 'mg-helm-'));
t.teardown(() => rmSync(home, { recursive: true, force: true }));
const env = { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };

const CI_DIR = join(ROOT, 'charts/ci');
const CI_FILES = readdirSync(CI_DIR).filter((f) => f.endsWith('-values.yaml')).sort();
const NS = 'meshguard';

type Obj = Record<string, any>;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(helm, args, { env, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function template(extra: string[] = []): Promise<string> {
  const r = await run(['template', 'meshguard', CHART_DIR, '-n', NS, ...extra]);
  if (r.code !== 0) throw new Error(`helm template ${extra.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

async function render(extra: string[] = []): Promise<Obj[]> {
  return parseAllDocuments(await template(extra))
    .map((d) => d.toJS() as Obj | null)
    .filter((d): d is Obj => d !== null);
}

const find = (docs: Obj[], kind: string, name?: string): Obj => {
  const d = docs.find((x) => x.kind === kind && (name === undefined || x.metadata?.name === name));
  if (d === undefined) throw new Error(`no ${kind} ${name ?? ''} rendered`);
  return d;
};

const valuesOf = (file?: string): Obj => {
  const base = parseYaml(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as Obj;
  if (file === undefined) return base;
  const over = parseYaml(readFileSync(join(CI_DIR, file), 'utf8')) as Obj;
  const merge = (a: Obj, b: Obj): Obj => {
    const out: Obj = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) && typeof a[k] === 'object' ? merge(a[k], v) : v;
    return out;
  };
  return merge(base, over);
};

const VARIANTS: { name: string; args: string[]; file?: string }[] = [
  { name: 'default values', args: [] },
  ...CI_FILES.map((f) => ({ name: f, args: ['-f', join(CI_DIR, f)], file: f })),
];

t.test('generated chart files are current (node tools/sync-chart.ts)', async (t) => {
  for (const [path, content] of Object.entries(expectedFiles())) t.equal(readFileSync(path, 'utf8'), content, `${path} is current`);
  const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as Obj;
  const { rules: chartRules, ...chartProps } = schema.properties.config.properties as Obj;
  const { rules: codeRules, ...codeProps } = toJsonSchema(CONFIG_SCHEMA).properties as Obj;
  t.same(chartProps, codeProps, "the chart's schema for `config` is the configuration schema");
  t.same(chartRules.propertyNames, { enum: RULE_IDS }, 'config.rules keys are the registered rule ids');
  t.same({ ...chartRules, propertyNames: undefined }, { ...codeRules, propertyNames: undefined }, 'and rule settings as in the configuration schema');
  t.same(schema.properties.config.required, ['exemptNamespaces'], 'the lists the templates read are required');
});

t.test('chart metadata and values.yaml agree with the code', async (t) => {
  const chart = parseYaml(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as Obj;
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Obj;
  t.equal(chart.appVersion, pkg.version, 'appVersion is the package version');
  const v = valuesOf();
  t.same(v.config.exemptNamespaces, DEFAULT_EXEMPT_NAMESPACES, 'config.exemptNamespaces is the built-in default');
  const defaults = loadConfig({ ruleIds: RULE_IDS });
  t.equal(v.config.reconciler.leaseName, defaults.reconciler.leaseName, 'the Lease named in RBAC is the default one');
  t.equal(v.config.cluster.discoverRevisions, defaults.cluster.discoverRevisions);
  t.equal(v.config.scan.intervalSeconds, defaults.scan.intervalSeconds);
  t.equal(v.config.server.port, defaults.server.port);
  for (const k of ['maxInFlight', 'maxInFlightBytes', 'maxEventLoopDelayMs', 'deadlineMarginPercent'] as const) {
    t.equal(v.config.server[k], defaults.server[k], `config.server.${k} is the built-in default`);
  }
  const text = readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8');
  const undocumented: string[] = [];
  const walk = (o: Obj, path: string): void => {
    for (const [k, val] of Object.entries(o)) {
      const key = path === '' ? k : `${path}.${k}`;
      // A value is documented by a comment on the lines right above it (or above its parent map).
      const lines = text.split('\n');
      const at = lines.findIndex((l) => new RegExp(`^\\s*${k.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:`).test(l));
      if (at <= 0 || !/^\s*#/.test(lines[at - 1] ?? '')) {
        if (val === null || typeof val !== 'object' || Array.isArray(val)) undocumented.push(key);
      }
      if (val !== null && typeof val === 'object' && !Array.isArray(val) && !['labels', 'annotations', 'resources', 'requests', 'limits'].includes(k)) walk(val, key);
    }
  };
  walk(v, '');
  t.same(undocumented, [], 'every value has a comment');
});

t.test('helm lint --strict passes', async (t) => {
  for (const v of VARIANTS) {
    const r = await run(['lint', CHART_DIR, '--strict', '-n', NS, ...v.args]);
    t.equal(r.code, 0, `${v.name}: ${r.stdout}${r.stderr}`);
  }
});

t.test('helm template is deterministic, with no generated secrets or cluster lookups', async (t) => {
  for (const v of VARIANTS) t.equal(await template(v.args), await template(v.args), `${v.name}: rendered twice, identical`);
  for (const f of readdirSync(join(CHART_DIR, 'templates'), { recursive: true, encoding: 'utf8' }).filter((p) => /\.(ya?ml|tpl|txt)$/.test(p))) {
    const src = readFileSync(join(CHART_DIR, 'templates', f), 'utf8');
    t.notMatch(src, /\b(rand[A-Za-z]*|genCA|genSelfSignedCert|genSignedCert|genPrivateKey|uuidv4|now|lookup)\b/, `${f} uses no random, time or lookup function`);
  }
  const docs = await render();
  t.notOk(docs.some((d) => d.kind === 'Secret'), 'no Secret is rendered in self-managed mode');
});

t.test('the schema and the templates refuse bad values', async (t) => {
  const rows: { name: string; set: string[]; want: RegExp }[] = [
    { name: 'an unknown mode', set: ['--set', 'mode=strict'], want: /mode/ },
    { name: 'replicas as a word', set: ['--set-string', 'replicas=two'], want: /replicas/ },
    { name: 'an unknown top-level value', set: ['--set', 'replica=2'], want: /replica/ },
    { name: 'an unknown configuration key', set: ['--set', 'config.modee=audit'], want: /modee/ },
    { name: 'a configuration value out of range', set: ['--set', 'config.server.port=70000'], want: /port/ },
    { name: 'a bad exempt namespace name', set: ['--set', 'config.exemptNamespaces[0]=Kube_System'], want: /exemptNamespaces/ },
    { name: 'a webhook timeout over 30 s', set: ['--set', 'webhook.timeoutSeconds=60'], want: /timeoutSeconds/ },
    { name: 'an unknown failurePolicy', set: ['--set', 'webhook.failurePolicy=Maybe'], want: /failurePolicy/ },
    { name: 'an unknown certificate mode', set: ['--set', 'certificates.mode=vault'], want: /certificates/ },
    { name: 'an own Secret without a caBundle', set: ['--set', 'certificates.mode=secret', '--set', 'certificates.secret.name=x'], want: /caBundle/ },
    { name: 'a malformed image digest', set: ['--set', 'image.digest=latest'], want: /digest/ },
    { name: 'a mistyped rule id', set: ['--set', 'config.rules.no-such-rule.enabled=false'], want: /no-such-rule/ },
    { name: 'exemptNamespaces set to null', set: ['--set', 'config.exemptNamespaces=null'], want: /exemptNamespaces/ },
    { name: 'webhook arming set inside config (the chart owns it)', set: ['--set', 'config.webhookArming.failurePolicy=Ignore'], want: /config\.webhookArming\.failurePolicy is set by the chart/ },
    { name: 'the mode set inside config (the chart owns it)', set: ['--set', 'config.mode=audit'], want: /config\.mode is set by the chart/ },
    { name: 'a certificate file set inside config (the chart owns it)', set: ['--set', 'config.server.certFile=/x'], want: /config\.server\.certFile is set by the chart/ },
    { name: 'meshguard\'s namespace set inside config', set: ['--set', 'config.meshguardNamespace=other'], want: /config\.meshguardNamespace is set by the chart/ },
    { name: 'a request timeout longer than the webhook timeout', set: ['--set', 'config.server.requestTimeoutMs=10000'], want: /requestTimeoutMs .* must not exceed webhook\.timeoutSeconds/ },
    { name: 'client authentication without a CA', set: ['--set', 'clientAuth.enabled=true'], want: /clientAuth\.caConfigMap/ },
    { name: 'an apiserver CIDR that is not one', set: ['--set', 'networkPolicy.apiserverCIDRs[0]=apiserver'], want: /apiserverCIDRs/ },
    { name: 'the client CA file set inside config (the chart owns it)', set: ['--set', 'config.server.clientCaFile=/x'], want: /config\.server\.clientCaFile is set by the chart/ },
  ];
  for (const row of rows) {
    const r = await run(['template', 'meshguard', CHART_DIR, '-n', NS, ...row.set]);
    t.not(r.code, 0, `${row.name}: refused`);
    t.match(r.stderr, row.want, `${row.name}: the message names it`);
  }
});

t.test('the rendered configuration is a valid meshguard configuration with the chart-owned keys set', async (t) => {
  for (const v of VARIANTS) {
    const docs = await render(v.args);
    const raw = JSON.parse(find(docs, 'ConfigMap').data['config.json']) as Obj;
    const dir = mkdtempSync(join(tmpdir(), 'mg-cfg-'));
    const file = join(dir, 'config.json');
    (await import('node:fs')).writeFileSync(file, JSON.stringify(raw));
    const c = loadConfig({ file, ruleIds: RULE_IDS });
    rmSync(dir, { recursive: true, force: true });
    const values = valuesOf(v.file);
    const mode = values.certificates.mode as string;
    t.equal(c.mode, values.mode, `${v.name}: mode`);
    t.equal(c.meshguardNamespace, NS, `${v.name}: meshguardNamespace is the release namespace`);
    t.equal(c.cluster.inCluster, true, `${v.name}: in-cluster`);
    t.equal(c.server.drainSeconds, values.shutdown.drainSeconds, `${v.name}: drainSeconds`);
    t.equal(c.selfManagedCerts.enabled, mode === 'self-managed', `${v.name}: selfManagedCerts.enabled`);
    t.equal(c.server.certFile, mode === 'self-managed' ? null : '/certs/tls.crt', `${v.name}: certFile`);
    t.equal(c.server.caFile, mode === 'cert-manager' ? '/certs/ca.crt' : null, `${v.name}: caFile`);
    t.equal(c.server.certDir, '/certs');
    t.equal(c.selfManagedCerts.webhookConfigurationName, find(docs, 'ValidatingWebhookConfiguration').metadata.name, `${v.name}: patches the rendered webhook configurations`);
    t.equal(c.webhookArming.enabled, true, `${v.name}: webhook arming on`);
    t.equal(c.webhookArming.webhookConfigurationName, find(docs, 'ValidatingWebhookConfiguration').metadata.name, `${v.name}: arms the rendered webhook configurations`);
    t.equal(c.selfManagedCerts.serviceName, find(docs, 'Service').metadata.name, `${v.name}: the certificate covers the rendered Service`);
    t.equal(c.server.requestTimeoutMs, values.webhook.timeoutSeconds * 1000, `${v.name}: receiving a request may take the webhook timeout, no longer`);
    if (mode !== 'self-managed') t.same(c.server.certSans, [`${find(docs, 'Service').metadata.name}.${NS}.svc`], `${v.name}: an own certificate must cover the Service's name`);
  }
  const short = loadConfig({ file: await configFileOf(['--set', 'webhook.timeoutSeconds=2']), ruleIds: RULE_IDS });
  t.same([short.server.requestTimeoutMs, short.server.headersTimeoutMs], [2000, 1600], 'a 2 s webhook timeout: 2 s to receive a request, 1.6 s for the headers');
});

async function configFileOf(args: string[]): Promise<string> {
  const raw = find(await render(args), 'ConfigMap').data['config.json'] as string;
  const dir = mkdtempSync(join(tmpdir(), 'mg-cfg-'));
  (await import('node:fs')).writeFileSync(join(dir, 'config.json'), raw);
  return join(dir, 'config.json');
}

t.test('NetworkPolicy sources and client-certificate authentication of the apiserver', async (t) => {
  const open = find(await render(), 'NetworkPolicy');
  t.notOk('from' in open.spec.ingress[0], 'without apiserverCIDRs or from: any source (the apiserver address is not known at render time)');
  const np = find(await render(['--set', 'networkPolicy.apiserverCIDRs[0]=10.0.0.0/24', '--set', 'networkPolicy.from[0].namespaceSelector.matchLabels.team=monitoring']), 'NetworkPolicy');
  t.same(np.spec.ingress[0].from, [{ ipBlock: { cidr: '10.0.0.0/24' } }, { namespaceSelector: { matchLabels: { team: 'monitoring' } } }], 'apiserverCIDRs and from: only those sources');
  const docs = await render(['--set', 'clientAuth.enabled=true', '--set', 'clientAuth.caConfigMap=apiserver-client-ca']);
  const c = loadConfig({ file: await configFileOf(['--set', 'clientAuth.enabled=true', '--set', 'clientAuth.caConfigMap=apiserver-client-ca']), ruleIds: RULE_IDS });
  t.equal(c.server.clientCaFile, '/etc/meshguard-client-ca/ca.crt', 'clientAuth: server.clientCaFile set');
  const pod = find(docs, 'Deployment').spec.template.spec;
  t.same(pod.volumes.find((v: Obj) => v.name === 'client-ca')?.configMap, { name: 'apiserver-client-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] }, 'the CA ConfigMap is mounted');
  t.ok(pod.containers[0].volumeMounts.some((m: Obj) => m.name === 'client-ca' && m.mountPath === '/etc/meshguard-client-ca'), 'where clientCaFile points');
  t.notOk(find(await render(), 'Deployment').spec.template.spec.volumes.some((v: Obj) => v.name === 'client-ca'), 'off by default');
});

t.test('the Deployment meets the restricted Pod Security profile and drains before it stops', async (t) => {
  for (const v of VARIANTS) {
    const docs = await render(v.args);
    const values = valuesOf(v.file);
    const d = find(docs, 'Deployment');
    const pod = d.spec.template.spec;
    t.equal(d.spec.replicas, values.replicas, `${v.name}: replicas`);
    t.same(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' }, `${v.name}: pod seccomp RuntimeDefault`);
    t.equal(pod.securityContext.runAsNonRoot, true);
    t.equal(pod.securityContext.runAsUser, 65532);
    t.notOk(pod.hostNetwork || pod.hostPID || pod.hostIPC, 'no host namespaces');
    t.equal(pod.priorityClassName, 'system-cluster-critical');
    t.ok(pod.topologySpreadConstraints?.length > 0, 'spread over nodes');
    for (const c of pod.containers as Obj[]) {
      const sc = c.securityContext;
      t.equal(sc.allowPrivilegeEscalation, false, `${c.name}: no privilege escalation`);
      t.same(sc.capabilities, { drop: ['ALL'] }, `${c.name}: all capabilities dropped, none added`);
      t.equal(sc.readOnlyRootFilesystem, true, `${c.name}: read-only root filesystem`);
      t.equal(sc.runAsNonRoot, true);
      t.equal(sc.runAsUser, 65532);
      t.notOk(sc.privileged, 'not privileged');
      t.same(sc.seccompProfile, { type: 'RuntimeDefault' });
      t.notOk((c.ports as Obj[]).some((p) => p.hostPort !== undefined), 'no host ports');
      for (const m of c.volumeMounts as Obj[]) t.notOk('subPath' in m || 'subPathExpr' in m, `${m.name}: mounted as a directory, never subPath`);
      t.same([c.readinessProbe.httpGet.path, c.readinessProbe.httpGet.scheme], ['/readyz', 'HTTPS'], 'readiness /readyz over HTTPS');
      t.same([c.livenessProbe.httpGet.path, c.livenessProbe.httpGet.scheme], ['/healthz', 'HTTPS'], 'liveness /healthz over HTTPS');
      t.ok(c.resources?.requests?.memory && c.resources?.limits?.memory, 'memory request and limit');
      t.same(c.args, ['serve', '--config=/etc/meshguard/config.json', '--in-cluster'], 'serve (the image runs any subcommand), the config file and in-cluster access');
      const sleep = c.lifecycle.preStop.sleep.seconds as number;
      t.equal(sleep, values.shutdown.preStopSleepSeconds, 'preStop sleep (no shell needed)');
      t.ok(pod.terminationGracePeriodSeconds >= sleep + values.shutdown.drainSeconds + values.webhook.timeoutSeconds, `grace ${pod.terminationGracePeriodSeconds}s covers sleep + drain + an in-flight request`);
    }
    const allowed = new Set(['configMap', 'secret', 'emptyDir', 'projected', 'downwardAPI', 'persistentVolumeClaim', 'ephemeral', 'csi']);
    for (const vol of pod.volumes as Obj[]) t.ok(Object.keys(vol).filter((k) => k !== 'name').every((k) => allowed.has(k)), `${vol.name}: a volume type restricted allows`);
    const labels = d.spec.template.metadata.labels;
    t.equal(labels['sidecar.istio.io/inject'], 'false', 'the pods stay out of the sidecar mesh');
    t.equal(labels['istio.io/dataplane-mode'], 'none', 'and out of ambient');
    t.equal(d.spec.strategy.rollingUpdate.maxUnavailable, 0, 'a rollout never removes a ready pod first');
    const pdb = find(docs, 'PodDisruptionBudget');
    t.same(pdb.spec.selector, d.spec.selector, 'the PDB covers the pods');
    const np = find(docs, 'NetworkPolicy');
    t.same(np.spec.policyTypes, ['Ingress']);
    t.same(np.spec.ingress.map((i: Obj) => i.ports), [[{ protocol: 'TCP', port: values.config.server.port }]], 'only the https port (webhook and /metrics) is admitted');
  }
});

function rbacLines(docs: Obj[]): string[] {
  return docs
    .filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role')
    .flatMap((d) =>
      (d.rules as Obj[]).map((r) => `${d.kind} ${[...r.apiGroups].map((g: string) => g || 'core').join(',')} ${r.resources.join(',')} ${r.verbs.join(',')}${r.resourceNames ? ` [${r.resourceNames.join(',')}]` : ''}`),
    );
}

t.test('RBAC: no wildcards, writes limited by name', async (t) => {
  for (const v of VARIANTS) {
    const docs = await render(v.args);
    const rules = docs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role').flatMap((d) => d.rules as Obj[]);
    for (const r of rules) {
      for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames']) {
        t.notOk((r[field] ?? []).some((x: string) => x.includes('*')), `${v.name}: no * in ${field} of ${JSON.stringify(r)}`);
      }
      t.notOk(r.nonResourceURLs, 'no non-resource URLs');
      const writes = r.verbs.filter((x: string) => ['update', 'patch', 'delete'].includes(x));
      const istio = r.apiGroups.every((g: string) => g.endsWith('.istio.io'));
      if (writes.length > 0 && !istio) t.ok(r.resourceNames?.length > 0, `${v.name}: ${writes.join(',')} on ${r.resources.join(',')} only by resourceNames`);
    }
  }
  t.same(rbacLines(await render()), [
    'ClusterRole meshguard.dev meshguardexceptions get,list,watch',
    'ClusterRole core namespaces get,list,watch',
    'ClusterRole admissionregistration.k8s.io mutatingwebhookconfigurations list,watch',
    'ClusterRole admissionregistration.k8s.io mutatingwebhookconfigurations,validatingwebhookconfigurations get,patch [meshguard]',
    'ClusterRole networking.istio.io serviceentries,sidecars get,list,watch,create,update,delete',
    'ClusterRole security.istio.io authorizationpolicies,peerauthentications get,list,watch,create,update,delete',
    'ClusterRole meshguard.dev meshguardexceptions list,watch',
    'Role discovery.k8s.io endpointslices list',
    'Role core secrets create',
    'Role core secrets get,update [meshguard-tls]',
    'Role coordination.k8s.io leases create',
    'Role coordination.k8s.io leases get,update [meshguard-reconciler]',
    'ClusterRole core namespaces create',
  ], 'the default RBAC, rule by rule (the first: read access to MeshguardExceptions aggregated into view/edit/admin; the last: the helm test pod, a hook; no Events: meshguard writes none)');
  const docs = await render();
  const view = find(docs, 'ClusterRole', 'meshguard-exceptions-view');
  t.equal(view.metadata.labels['rbac.authorization.k8s.io/aggregate-to-edit'], 'true', 'tenants with edit can read exceptions');
  t.notOk(docs.filter((d) => d.kind === 'ClusterRole' && d.metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-edit'] === 'true').some((d) => (d.rules as Obj[]).some((r) => r.verbs.some((v: string) => !['get', 'list', 'watch'].includes(v)))), 'no aggregated role lets tenants write them');
  const test = find(docs, 'Pod', 'meshguard-test');
  t.equal(test.metadata.annotations['helm.sh/hook'], 'test', 'the helm test pod is a test hook');
  t.same(test.spec.containers[0].args, ['verify', '--in-cluster', '--expect=deny'], 'it runs meshguard verify, expecting a denial in enforce mode');
  t.same(find(await render(['--set', 'mode=audit']), 'Pod', 'meshguard-test').spec.containers[0].args, ['verify', '--in-cluster', '--expect=allow'], 'and an admission in audit mode');
  const cm = rbacLines(await render(['-f', join(CI_DIR, 'cert-manager-values.yaml')]));
  t.notOk(cm.some((l) => /secrets|leases|istio/.test(l)), 'cert-manager without the reconciler: no Secret, Lease or Istio rights');
  t.ok(cm.includes('ClusterRole admissionregistration.k8s.io mutatingwebhookconfigurations,validatingwebhookconfigurations get,patch [meshguard]'), 'and its own webhook configurations, by name, to arm them (ADR 0005)');
  const scan = rbacLines(await render(['-f', join(CI_DIR, 'self-managed-values.yaml')]));
  t.ok(scan.some((l) => / apps .*deployments.* list$/.test(l)), 'the periodic scan lists workloads');
});

t.test('the webhook configurations are what webhookConfigurations() generates from the rule registry', async (t) => {
  for (const v of VARIANTS) {
    const docs = await render(v.args);
    const values = valuesOf(v.file);
    const mode = values.certificates.mode as string;
    // Rendered failing open whatever the mode; meshguard arms them (ADR 0005).
    const failurePolicy: FailurePolicy = 'Ignore';
    const want = webhookConfigurations({
      client: { service: { namespace: NS, name: 'meshguard', port: values.service.port } },
      ...(mode === 'secret' ? { caBundle: values.certificates.secret.caBundle as string } : {}),
      failurePolicy,
      timeoutSeconds: values.webhook.timeoutSeconds,
      exemptNamespaces: values.config.exemptNamespaces,
      meshguardNamespace: NS,
      rules: RULES,
    });
    for (const kind of ['mutating', 'validating'] as const) {
      const got = find(docs, kind === 'mutating' ? 'MutatingWebhookConfiguration' : 'ValidatingWebhookConfiguration');
      t.same(got.webhooks, want[kind].webhooks, `${v.name}: ${kind} webhooks equal the generated ones`);
      t.equal(got.metadata.name, 'meshguard');
      const ann = got.metadata.annotations?.['cert-manager.io/inject-ca-from'];
      t.equal(ann, mode === 'cert-manager' ? `${NS}/meshguard` : undefined, `${v.name}: inject-ca-from only with cert-manager`);
      if (mode === 'cert-manager') t.ok(find(docs, 'Certificate', 'meshguard'), 'the Certificate it names is rendered');
      for (const w of got.webhooks as Obj[]) {
        t.equal(w.sideEffects, 'None');
        t.same(w.admissionReviewVersions, ['v1']);
        t.equal(w.matchPolicy, 'Equivalent');
        t.equal('caBundle' in w.clientConfig, mode === 'secret', `${v.name}: ${w.name} carries a caBundle only for an own Secret`);
        const excluded = w.namespaceSelector.matchExpressions.find((e: Obj) => e.operator === 'NotIn')?.values ?? [];
        if (w.namespaceSelector.matchExpressions.some((e: Obj) => e.operator === 'NotIn')) {
          for (const ns of ['kube-system', NS]) t.ok(excluded.includes(ns), `${v.name}: ${w.name} never sees ${ns}`);
        }
      }
    }
  }
  const armedWith = async (args: string[]): Promise<[string, string]> => {
    const docs = await render(args);
    const cfg = JSON.parse(find(docs, 'ConfigMap').data['config.json'] as string) as Obj;
    return [find(docs, 'ValidatingWebhookConfiguration').webhooks[0].failurePolicy as string, cfg.webhookArming.failurePolicy as string];
  };
  t.same(await armedWith([]), ['Ignore', 'Fail'], 'enforce: rendered Ignore, armed with Fail once meshguard is ready');
  t.same(await armedWith(['--set', 'mode=audit']), ['Ignore', 'Ignore'], 'audit mode fails open, armed or not');
  t.same(await armedWith(['--set', 'mode=audit', '--set', 'webhook.failurePolicy=Fail']), ['Ignore', 'Fail'], 'webhook.failurePolicy pins the armed policy');
  t.same(await armedWith(['--set', 'webhook.failurePolicy=Ignore']), ['Ignore', 'Ignore'], 'and can pin Ignore in enforce mode');
});

t.test('certificates: cert-manager renders an issuer chain and a Certificate for the Service; an own Secret is mounted', async (t) => {
  const cm = await render(['-f', join(CI_DIR, 'cert-manager-values.yaml')]);
  const cert = find(cm, 'Certificate', 'meshguard');
  t.same(cert.spec.dnsNames, ['meshguard.meshguard.svc', 'meshguard.meshguard.svc.cluster.local']);
  t.equal(cert.spec.secretName, 'meshguard-tls');
  t.same(cert.spec.issuerRef, { group: 'cert-manager.io', kind: 'Issuer', name: 'meshguard-ca' }, 'signed by the rendered CA issuer');
  t.ok(find(cm, 'Certificate', 'meshguard-ca').spec.isCA, 'a CA certificate');
  const ext = await render(['-f', join(CI_DIR, 'cert-manager-values.yaml'), '--set', 'certificates.certManager.issuerRef.name=corp', '--set', 'certificates.certManager.issuerRef.kind=ClusterIssuer']);
  t.same(find(ext, 'Certificate').spec.issuerRef, { group: 'cert-manager.io', kind: 'ClusterIssuer', name: 'corp' }, 'an existing issuer is used as is');
  t.notOk(ext.some((d) => d.kind === 'Issuer'), 'and no Issuer is rendered');
  const own = await render(['-f', join(CI_DIR, 'own-secret-values.yaml')]);
  const vol = (find(own, 'Deployment').spec.template.spec.volumes as Obj[]).find((x) => x.name === 'certs');
  t.equal(vol?.secret?.secretName, 'my-meshguard-tls', 'the own Secret is mounted');
  t.notOk(own.some((d) => d.kind === 'Certificate'), 'nothing to issue');
  t.notOk(rbacLines(own).some((l) => l.includes('secrets')), 'no Secret rights');
  const self = await render();
  t.same((find(self, 'Deployment').spec.template.spec.volumes as Obj[]).find((x) => x.name === 'certs')?.emptyDir, { medium: 'Memory', sizeLimit: '1Mi' }, 'self-managed: an in-memory directory meshguard writes');
});

t.test('namespace.create renders the release namespace, restricted and outside the mesh', async (t) => {
  t.notOk((await render()).some((d) => d.kind === 'Namespace'), 'not by default (helm install --create-namespace)');
  const ns = find(await render(['--set', 'namespace.create=true']), 'Namespace');
  t.equal(ns.metadata.name, NS);
  t.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  t.equal(ns.metadata.labels['istio-injection'], 'disabled');
});

t.test('monitoring: ServiceMonitor, PrometheusRule and dashboard on request; the metrics port through Service and NetworkPolicy', async (t) => {
  const plain = await render();
  t.notOk(plain.some((d) => ['ServiceMonitor', 'PrometheusRule', 'CustomResourceDefinition'].includes(d.kind) || d.metadata?.name === 'meshguard-dashboard'), 'all off by default');
  const https = await render(['--set', 'monitoring.serviceMonitor.enabled=true', '--set', 'monitoring.prometheusRule.enabled=true', '--set', 'monitoring.dashboard.enabled=true']);
  const sm = find(https, 'ServiceMonitor');
  t.same(sm.spec.endpoints, [{ port: 'https', scheme: 'https', tlsConfig: { serverName: 'meshguard.meshguard.svc', ca: { secret: { name: 'meshguard-tls', key: 'ca.crt' } } }, path: '/metrics', interval: '30s', scrapeTimeout: '10s', honorLabels: false }], 'no metrics port: /metrics on https, verified against the CA');
  const rule = find(https, 'PrometheusRule');
  const alerts = rule.spec.groups.flatMap((g: Obj) => g.rules.map((r: Obj) => r.alert)).sort();
  t.same(alerts, ['MeshguardCachesStale', 'MeshguardCertificateExpired', 'MeshguardCertificateExpiresSoon', 'MeshguardCertificateReloadFailing', 'MeshguardReconcilerFailures', 'MeshguardScanStale', 'MeshguardShedding', 'MeshguardWebhookErrors', 'MeshguardWebhookLatencyHigh']);
  const dash = find(https, 'ConfigMap', 'meshguard-dashboard');
  t.equal(dash.metadata.labels.grafana_dashboard, '1');
  t.equal(JSON.parse(dash.data['meshguard.json']).uid, 'meshguard', 'the dashboard JSON survives templating');
  const port = await render(['--set', 'monitoring.serviceMonitor.enabled=true', '--set', 'config.metrics.port=9090', '--set', 'networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring']);
  t.same(find(port, 'ServiceMonitor').spec.endpoints[0].port, 'metrics');
  t.same(find(port, 'Service').spec.ports.map((p: Obj) => `${p.name}:${p.port}`), ['https:443', 'metrics:9090']);
  t.ok(find(port, 'Deployment').spec.template.spec.containers[0].ports.some((p: Obj) => p.name === 'metrics' && p.containerPort === 9090));
  const np = find(port, 'NetworkPolicy').spec.ingress;
  t.same(np[1], { ports: [{ protocol: 'TCP', port: 9090 }], from: [{ namespaceSelector: { matchLabels: { name: 'monitoring' } } }] }, 'the metrics port admits its own sources');
  t.equal(JSON.parse(find(port, 'ConfigMap', 'meshguard').data['config.json']).metrics.port, 9090);
});

t.test('reports: CRDs on request (kept on uninstall), RBAC for the reports the scan writes', async (t) => {
  const docs = await render(['--set', 'reports.installPolicyReportCRDs=true', '--set', 'reports.installOpenReportsCRDs=true', '--set', 'config.scan.intervalSeconds=600', '--set', 'config.scan.policyReports=true', '--set', 'config.scan.openReports=true']);
  const crds = docs.filter((d) => d.kind === 'CustomResourceDefinition');
  t.same(crds.map((c) => c.metadata.name).sort(), ['clusterpolicyreports.wgpolicyk8s.io', 'clusterreports.openreports.io', 'policyreports.wgpolicyk8s.io', 'reports.openreports.io']);
  for (const c of crds) t.equal(c.metadata.annotations['helm.sh/resource-policy'], 'keep', `${c.metadata.name} is kept on uninstall`);
  const rules = find(docs, 'ClusterRole', 'meshguard').rules.filter((r: Obj) => r.apiGroups.includes('wgpolicyk8s.io') || r.apiGroups.includes('openreports.io'));
  t.same(rules.map((r: Obj) => `${r.apiGroups} ${r.verbs}${r.resourceNames ? ` [${r.resourceNames}]` : ''}`), ['wgpolicyk8s.io list,create', 'wgpolicyk8s.io update,delete [meshguard]', 'openreports.io list,create', 'openreports.io update,delete [meshguard]']);
  const noScan = await render(['--set', 'config.scan.policyReports=true']);
  t.notOk(JSON.stringify(find(noScan, 'ClusterRole', 'meshguard')).includes('wgpolicyk8s.io'), 'without the periodic scan nothing writes reports: no RBAC');
});
