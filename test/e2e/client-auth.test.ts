// Client-certificate authentication of the apiserver against a real kube-apiserver: its
// AdmissionConfiguration points the webhook admission plugins to a kubeconfig whose user, named
// after the webhook's host:port, holds a client certificate; meshguard serve --client-ca-file
// trusts that certificate's CA. Namespaces are then admitted (and mutated) through meshguard; a
// meshguard the apiserver has no certificate for answers 401 and the failure policy refuses.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCA } from '../../src/jobs/certs/selfsigned.ts';
import { clientCert } from '../helpers/server.ts';
import { freePort, startCluster } from './helpers/cluster.ts';
import { startMeshguard } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000); // the first run builds the binaries

const ca = await generateCA(30);
const client = await clientCert(ca, 'kube-apiserver-webhook-client');

const port = await freePort();
// The apiserver's files are written before the cluster starts (its directory does not exist yet).
const dir = mkdtempSync(join(tmpdir(), 'mg-client-auth-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const clientCaFile = join(dir, 'client-ca.crt');
writeFileSync(clientCaFile, ca.cert);
writeFileSync(join(dir, 'client.crt'), client.cert);
writeFileSync(join(dir, 'client.key'), client.key, { mode: 0o600 });
// A webhook called by URL is looked up by host:port (by <service>.<namespace>.svc for a Service).
writeFileSync(
  join(dir, 'webhook-kubeconfig.yaml'),
  `apiVersion: v1
kind: Config
users:
  - name: "127.0.0.1:${port}"
    user:
      client-certificate: ${join(dir, 'client.crt')}
      client-key: ${join(dir, 'client.key')}
`,
);
writeFileSync(
  join(dir, 'admission-config.yaml'),
  `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: ValidatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: ${join(dir, 'webhook-kubeconfig.yaml')}
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: ${join(dir, 'webhook-kubeconfig.yaml')}
`,
);

const cluster = await startCluster({ extraApiserverArgs: [`--admission-control-config-file=${join(dir, 'admission-config.yaml')}`] });
t.teardown(() => cluster.stop());
await cluster.applyYaml('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: meshguard\n');

t.test('the apiserver authenticates with its client certificate: namespaces are admitted through meshguard', async (t) => {
  const mg = await startMeshguard(cluster, { port, args: ['--client-ca-file', clientCaFile] });
  t.teardown(() => mg.stop());
  await mg.register('Fail');
  const r = await cluster.kubectl(['create', 'namespace', 'authenticated-ns'], { as: 'tenant' });
  t.equal(r.code, 0, `kubectl create namespace succeeds: ${r.stderr}`);
  const ns = JSON.parse((await cluster.kubectl(['get', 'namespace', 'authenticated-ns', '-o', 'json'])).stdout);
  t.equal(ns.metadata.labels['istio-injection'], 'enabled', "meshguard's mutation ran: the call was authenticated and answered");
  const denied = await cluster.kubectl(['create', '-f', '-'], { as: 'tenant', input: 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: disabled-ns\n  labels: {istio-injection: disabled}\n' });
  t.match(denied.stderr, 'admission webhook "validate.meshguard.dev" denied the request:', 'and validation judges the request');
});

t.test('a meshguard the apiserver holds no certificate for answers 401, and Fail refuses', async (t) => {
  const other = await startMeshguard(cluster, { name: 'unknown', args: ['--client-ca-file', clientCaFile] });
  t.teardown(() => other.stop());
  await other.register('Fail');
  const r = await cluster.kubectl(['create', 'namespace', 'unauthenticated-ns'], { as: 'tenant' });
  t.not(r.code, 0, 'kubectl create namespace fails');
  t.match(r.stderr, /failed calling webhook/, `the apiserver reports the failed call: ${r.stderr.trim()}`);
  // client-go renders a 401 as "the server has asked for the client to provide credentials".
  t.match(r.stderr, /asked for the client to provide credentials/, 'because meshguard answered 401 to the unauthenticated caller');
});
