// `meshguard check` over a realistic Git repository of manifests: what CI sees before admission.
//
//   node tools/bench/check-manifests.ts [--count 1000]
//
// realisticManifests(n) writes n objects the way application repositories hold them: per app a
// Deployment or StatefulSet (probes, resources, security context, Istio annotations that are
// allowed), a Service, a ConfigMap, a ServiceAccount and a HorizontalPodAutoscaler; some apps
// also a CronJob or a bare Pod (a debug or migration pod); a few Namespace manifests (meshed),
// most apps in namespaces that are not in the repository. Every Pod is uninjected, as in Git.
// A small, fixed share breaks a rule on purpose (hostNetwork, an injection opt-out), so the run
// also shows that real violations are still found. Used by test/unit/check-offline.test.ts.
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import type { KObject } from '../../src/core/request.ts';
import { checkOffline } from '../../src/cli/check.ts';
import { parseManifests } from '../../src/cli/manifests.ts';
import { loadConfig } from '../../src/config/load.ts';
import { RULE_IDS } from '../../src/policies/registry.ts';

const TEAMS = ['payments', 'checkout', 'catalog', 'search', 'accounts', 'shipping', 'notifications', 'reports'];

function podSpec(app: string, i: number): Record<string, unknown> {
  return {
    serviceAccountName: app,
    securityContext: { runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
    containers: [
      {
        name: 'app',
        image: `registry.example.com/${app}:1.${i % 20}.${i % 7}`,
        ports: [{ name: 'http', containerPort: 8080 }],
        env: [{ name: 'LOG_LEVEL', value: 'info' }, { name: 'CONFIG', valueFrom: { configMapKeyRef: { name: app, key: 'config' } } }],
        resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
        readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 5 },
        livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 10 },
        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
      },
    ],
  };
}

/** n objects as one multi-document YAML text, and how many of each kind and of the planted violations. */
export function realisticManifests(n: number): { text: string; kinds: Record<string, number>; planted: { hostNetwork: number; optOut: number } } {
  const docs: KObject[] = [];
  const kinds: Record<string, number> = {};
  const planted = { hostNetwork: 0, optOut: 0 };
  const push = (o: KObject): void => {
    if (docs.length >= n) return;
    docs.push(o);
    kinds[String(o.kind)] = (kinds[String(o.kind)] ?? 0) + 1;
  };
  // A few namespaces live in the repository (meshed); the rest are the platform's.
  for (const team of TEAMS.slice(0, 3)) push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `${team}-prod`, labels: { 'istio-injection': 'enabled', team } } });
  for (let i = 0; docs.length < n; i++) {
    const team = TEAMS[i % TEAMS.length] ?? 'x';
    const namespace = `${team}-${i % 3 === 0 ? 'prod' : i % 3 === 1 ? 'staging' : 'dev'}`;
    const app = `${team}-svc-${i}`;
    const labels = { app, 'app.kubernetes.io/name': app, 'app.kubernetes.io/part-of': team, version: 'v1' };
    const annotations: Record<string, string> = { 'prometheus.io/scrape': 'true', 'sidecar.istio.io/proxyCPU': '100m', 'sidecar.istio.io/proxyMemory': '128Mi' };
    const spec = podSpec(app, i);
    // Planted: one app in 100 asks for the host network, one in 150 opts out of injection.
    if (i % 100 === 7) {
      spec['hostNetwork'] = true;
      planted.hostNetwork++;
    }
    if (i % 150 === 11) {
      annotations['sidecar.istio.io/inject'] = 'false';
      planted.optOut++;
    }
    const template = { metadata: { labels, annotations }, spec };
    const meta = { name: app, namespace, labels };
    push(
      i % 5 === 4
        ? { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: meta, spec: { serviceName: app, replicas: 3, selector: { matchLabels: { app } }, template } }
        : { apiVersion: 'apps/v1', kind: 'Deployment', metadata: meta, spec: { replicas: 2, selector: { matchLabels: { app } }, strategy: { rollingUpdate: { maxUnavailable: 0 } }, template } },
    );
    push({ apiVersion: 'v1', kind: 'Service', metadata: meta, spec: { selector: { app }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } });
    push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: meta, data: { config: `listen: :8080\nupstream: http://${team}-api.${namespace}.svc.cluster.local\n` } });
    push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta });
    push({ apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: meta, spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: app }, minReplicas: 2, maxReplicas: 10, metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }] } });
    if (i % 4 === 0) push({ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { ...meta, name: `${app}-cleanup` }, spec: { schedule: '17 3 * * *', jobTemplate: { spec: { template: { metadata: { labels }, spec: { ...podSpec(app, i), restartPolicy: 'OnFailure' } } } } } });
    if (i % 3 === 0) push({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `${app}-migrate`, namespace, labels, annotations: { 'prometheus.io/scrape': 'false' } }, spec: { ...podSpec(app, i), restartPolicy: 'Never' } });
  }
  return { text: docs.map((d) => stringify(d)).join('---\n'), kinds, planted };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '1000' } } });
  const n = Number(values.count);
  const { text, kinds, planted } = realisticManifests(n);
  const config = loadConfig({ ruleIds: RULE_IDS });
  const t0 = performance.now();
  const { manifests, errors } = parseManifests('repo.yaml', text);
  const t1 = performance.now();
  const { findings, notes } = checkOffline(manifests, config);
  const t2 = performance.now();
  const byRule: Record<string, number> = {};
  for (const f of findings) byRule[f.rule] = (byRule[f.rule] ?? 0) + 1;
  console.log(`${manifests.length} objects (${Object.entries(kinds).map(([k, v]) => `${v} ${k}`).join(', ')}), ${errors.length} parse errors`);
  console.log(`planted: ${planted.hostNetwork} hostNetwork, ${planted.optOut} injection opt-outs`);
  console.log(`findings: ${findings.length} ${JSON.stringify(byRule)}`);
  for (const note of notes) console.log(`note: ${note}`);
  const strict = checkOffline(manifests, config, { uninjectedPods: 'judge', unknownNamespaces: 'deny' }).findings;
  const strictByRule: Record<string, number> = {};
  for (const f of strict) strictByRule[f.rule] = (strictByRule[f.rule] ?? 0) + 1;
  console.log(`with admission's semantics (uninjected Pods judged, unknown namespaces unknown): ${strict.length} findings ${JSON.stringify(strictByRule)}`);
  console.log(`parse ${(t1 - t0).toFixed(0)} ms, check ${(t2 - t1).toFixed(0)} ms (${(((t2 - t1) * 1000) / manifests.length).toFixed(0)} µs/object)`);
}
