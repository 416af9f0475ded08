// With meshguard down, deleting still works, and infrastructure namespaces still start Pods
// (issue 18 items 4 and 5), on a real kube-apiserver with kube-controller-manager's namespace
// controller (the one that empties a Terminating namespace, updates its status and makes the
// final PUT namespaces/<name>/finalize). meshguard's webhooks are registered with failurePolicy
// Fail, then meshguard is stopped. Must hold:
//  - a namespace deletion completes, and so does the removal of a finalizer from a Deployment
//    that is being deleted;
//  - a label change through namespaces/status still waits for meshguard (the protection kept);
//  - in a namespace an administrator labelled meshguard.dev/exempt=infrastructure, a hostNetwork
//    node agent Pod is created; in an unlabelled one it is refused;
//  - with meshguard up, a tenant cannot set the label.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster } from './helpers/cluster.ts';
import { eventually, startMeshguard } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const cluster = await startCluster();

/** kube-controller-manager with only the namespace controller, as the cluster's admin. */
function startNamespaceController(): ChildProcess {
  const log = openSync(join(cluster.dir, 'kube-controller-manager.log'), 'a');
  const args = [`--kubeconfig=${cluster.adminKubeconfig}`, '--controllers=namespace-controller', '--leader-elect=false', '--secure-port=0', '--concurrent-namespace-syncs=2'];
  const bin = cluster.binaries.kubeControllerManager;
  const withPdeath = existsSync('/usr/bin/setpriv');
  const noProxy = [process.env.NO_PROXY ?? process.env.no_proxy, '127.0.0.1', 'localhost'].filter(Boolean).join(',');
  const p = spawn(withPdeath ? '/usr/bin/setpriv' : bin, withPdeath ? ['--pdeathsig', 'KILL', '--', bin, ...args] : args, {
    stdio: ['ignore', log, log],
    env: { ...process.env, NO_PROXY: noProxy, no_proxy: noProxy },
  });
  closeSync(log);
  return p;
}

const kcm = startNamespaceController();
await cluster.applyYaml(`apiVersion: v1
kind: Namespace
metadata:
  name: meshguard
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-d
  labels:
    istio-injection: enabled
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-x
  labels:
    istio-injection: enabled
---
apiVersion: v1
kind: Namespace
metadata:
  name: monitoring
`);
const mg = await startMeshguard(cluster);
let mgStopped = false;
t.teardown(async () => {
  if (!mgStopped) await mg.stop();
  kcm.kill('SIGTERM');
  await cluster.stop();
});
await mg.register('Fail');

const deployment = (name: string, namespace: string, finalizers: string[] = []): string => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  namespace: ${namespace}
${finalizers.length > 0 ? `  finalizers: [${finalizers.join(', ')}]\n` : ''}spec:
  selector:
    matchLabels: {app: ${name}}
  template:
    metadata:
      labels: {app: ${name}}
    spec:
      containers:
        - name: ${name}
          image: nginx
`;
const nodeAgent = (namespace: string): string => `apiVersion: v1
kind: Pod
metadata:
  name: node-agent
  namespace: ${namespace}
spec:
  hostNetwork: true
  containers:
    - name: agent
      image: docker.io/calico/node:v3.30.0
      securityContext: {privileged: true}
`;
const exists = async (args: string[]): Promise<boolean> => (await cluster.kubectl(['get', ...args, '-o', 'name'])).code === 0;

t.test('meshguard up: tenants cannot exempt a namespace; an admin can', async (t) => {
  const tenant = await cluster.kubectl(['label', 'namespace', 'team-x', 'meshguard.dev/exempt=infrastructure'], { as: 'tenant' });
  t.not(tenant.code, 0, 'a tenant labelling team-x meshguard.dev/exempt=infrastructure is refused');
  t.match(tenant.stderr, /denied the request[\s\S]*\[control-labels-admin-only\]/, `by control-labels-admin-only: ${tenant.stderr.trim()}`);
  const admin = await cluster.kubectl(['create', '-f', '-'], { input: 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: calico-system\n  labels:\n    meshguard.dev/exempt: infrastructure\n' });
  t.equal(admin.code, 0, `an admin creates calico-system labelled exempt, outside the mesh ${admin.stderr}`);
  const labels = JSON.parse((await cluster.kubectl(['get', 'namespace', 'calico-system', '-o', 'json'])).stdout).metadata.labels as Record<string, string>;
  t.equal(labels['istio-injection'], undefined, 'the mutation did not enrol it in the mesh');
  const up = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { input: nodeAgent('calico-system') });
  t.equal(up.code, 0, `a hostNetwork, privileged node agent Pod in calico-system is admitted ${up.stderr}`);

  const web = await cluster.kubectl(['create', '-f', '-'], { input: deployment('web', 'team-d', ['example.com/hold']) });
  t.equal(web.code, 0, `a Deployment with a finalizer in team-d ${web.stderr}`);
  const api = await cluster.kubectl(['create', '-f', '-'], { input: deployment('api', 'team-d') });
  t.equal(api.code, 0, `and another one without ${api.stderr}`);
});

t.test('meshguard down: deletes complete, label edits still wait, exempt namespaces start Pods', async (t) => {
  await mg.stop();
  mgStopped = true;
  const blocked = await cluster.kubectl(['create', '--dry-run=server', '-f', '-'], { as: 'tenant', input: deployment('new', 'team-x') });
  t.not(blocked.code, 0, 'meshguard is down: a new Deployment in team-x is refused (failurePolicy Fail)');
  t.match(blocked.stderr, /failed calling webhook "validate-workloads\.meshguard\.dev"/, 'because the webhook cannot be called');

  // A workload with a finalizer: deleted, then its finalizer removed, as its controller would.
  const del = await cluster.kubectl(['delete', 'deployment', 'web', '-n', 'team-d', '--wait=false']);
  t.equal(del.code, 0, `DELETE of the Deployment is accepted (it waits for its finalizer) ${del.stderr}`);
  const unfinalize = await cluster.kubectl(['patch', 'deployment', 'web', '-n', 'team-d', '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]']);
  t.equal(unfinalize.code, 0, `removing the finalizer of the Deployment being deleted passes without meshguard ${unfinalize.stderr.trim()}`);
  t.ok(await eventually(async () => !(await exists(['deployment', 'web', '-n', 'team-d'])), 20_000), 'and the Deployment is gone');

  // A namespace: the namespace controller empties it, updates its status and finalizes it.
  const delNs = await cluster.kubectl(['delete', 'namespace', 'team-d', '--wait=false']);
  t.equal(delNs.code, 0, `DELETE of team-d is accepted ${delNs.stderr}`);
  const started = performance.now();
  const gone = await eventually(async () => !(await exists(['namespace', 'team-d'])), 90_000, 500);
  const left = gone ? '' : (await cluster.kubectl(['get', 'namespace', 'team-d', '-o', 'jsonpath={.status}'])).stdout;
  t.ok(gone, `team-d is deleted through the namespace controller's finalize call (${((performance.now() - started) / 1000).toFixed(1)} s) ${left}`);

  // The protection that stays: labels changed through namespaces/status still go to meshguard.
  const ns = JSON.parse((await cluster.kubectl(['get', 'namespace', 'team-x', '-o', 'json'])).stdout) as { metadata: { labels: Record<string, string> } };
  ns.metadata.labels['istio-injection'] = 'disabled';
  const viaStatus = await cluster.kubectl(['replace', '--raw', '/api/v1/namespaces/team-x/status', '-f', '-'], { input: JSON.stringify(ns) });
  t.not(viaStatus.code, 0, 'a label change through namespaces/status still waits for meshguard');
  t.match(viaStatus.stderr, /failed calling webhook "validate\.meshguard\.dev"/, 'refused: the namespace webhook cannot be called');

  // Infrastructure: exempt namespaces are not blocked; others are.
  const exempt = await cluster.kubectl(['create', '-f', '-'], { input: nodeAgent('calico-system') });
  t.equal(exempt.code, 0, `a node agent Pod in calico-system (labelled exempt) is created while meshguard is down ${exempt.stderr}`);
  const plain = await cluster.kubectl(['create', '-f', '-'], { input: nodeAgent('monitoring') });
  t.not(plain.code, 0, 'the same Pod in monitoring (not labelled) is refused while meshguard is down');
});
