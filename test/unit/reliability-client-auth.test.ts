// Client-certificate authentication of the apiserver (issue 18 item 1; server.clientCaFile,
// docs/install.md): with a client CA configured, /validate and /mutate answer only connections
// that presented a certificate signed by it (401 MG_CLIENT_CERT otherwise, before the body is
// read), while probes and /metrics need none. Real TLS on 127.0.0.1, certificates from selfsigned
// (as the apiserver's kubeconfig would hold), in-process and through `meshguard serve`.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCA } from '../../src/jobs/certs/selfsigned.ts';
import { ERRORS } from '../../src/errors.ts';
import { serverTlsOptions } from '../../src/webhook/tls-options.ts';
import { startServe } from '../helpers/process.ts';
import { reviewBody } from '../helpers/review.ts';
import { clientCert, startServer, testCerts } from '../helpers/server.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshguard-client-auth-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));


const clientCa = await generateCA(30);
const apiserver = await clientCert(clientCa, 'kube-apiserver');
const rogueCa = await generateCA(30);
const rogue = await clientCert(rogueCa, 'kube-apiserver');
const caFile = join(dir, 'client-ca.crt');
writeFileSync(caFile, clientCa.cert);

interface Answer {
  readonly status: number;
  readonly code?: string;
  readonly allowed?: boolean;
}

function call(url: string, ca: string, path: string, client?: { cert: string; key: string }, method = 'POST'): Promise<Answer> {
  const body = method === 'POST' ? JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'enabled' } } })) : undefined;
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, url),
      { method, ca, servername: 'localhost', agent: false, ...(client ?? {}), headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          const j = JSON.parse(text) as { code?: string; response?: { allowed: boolean } };
          resolve({ status: res.statusCode ?? 0, ...(j.code !== undefined ? { code: j.code } : {}), ...(j.response !== undefined ? { allowed: j.response.allowed } : {}) });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

t.test('with a client CA, the admission endpoints answer only the holder of a certificate it signed', async (t) => {
  const certs = await testCerts();
  const server = await startServer({ 'server.clientCaFile': caFile }, { https: serverTlsOptions({ cert: certs.cert, key: certs.key, ca: certs.caCert }, 'TLSv1.2', clientCa.cert) });
  t.teardown(() => server.close());
  for (const path of ['/validate', '/mutate']) {
    t.same(await call(server.url, server.ca, path), { status: 401, code: ERRORS.CLIENT_CERT.code }, `${path} without a client certificate: 401 MG_CLIENT_CERT`);
    t.same(await call(server.url, server.ca, path, rogue), { status: 401, code: ERRORS.CLIENT_CERT.code }, `${path} with a certificate of another CA: 401 MG_CLIENT_CERT`);
    const ok = await call(server.url, server.ca, path, apiserver);
    t.equal(ok.status, 200, `${path} with the apiserver's certificate: 200`);
    t.equal(ok.allowed, true, `${path}: the review is evaluated`);
  }
  t.equal((await call(server.url, server.ca, '/readyz', undefined, 'GET')).status, 200, '/readyz needs no client certificate (the kubelet presents none)');
  t.equal((await call(server.url, server.ca, '/healthz', undefined, 'GET')).status, 200, '/healthz needs none');
});

t.test('without a client CA nothing changes: no certificate is needed', async (t) => {
  const server = await startServer();
  t.teardown(() => server.close());
  t.equal((await call(server.url, server.ca, '/validate')).status, 200);
});

t.test('meshguard serve --client-ca-file: the same through the real CLI', async (t) => {
  const s = await startServe(['--port', '0', '--cert-dir', join(dir, 'certs'), '--client-ca-file', caFile, '--log-level', 'error', '--audit-log', join(dir, 'audit.jsonl')], { timeoutMs: 180_000 });
  t.teardown(() => s.stop('SIGKILL'));
  const ca = readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8');
  t.same(await call(s.url, ca, '/validate'), { status: 401, code: ERRORS.CLIENT_CERT.code }, 'no client certificate: 401');
  t.equal((await call(s.url, ca, '/validate', apiserver)).allowed, true, "the apiserver's certificate: evaluated");
  t.equal((await call(s.url, ca, '/readyz', undefined, 'GET')).status, 200, 'probes need none');
  const missing = await startServe(['--port', '0', '--cert-dir', join(dir, 'certs'), '--client-ca-file', join(dir, 'nope.crt')], { timeoutMs: 180_000 }).then(
    async (x) => {
      await x.stop('SIGKILL');
      return 'started';
    },
    (err: Error) => err.message,
  );
  t.match(missing, /exited with 2:[\s\S]*server\.clientCaFile/, 'a client CA file that cannot be read: exit 2 naming server.clientCaFile');
});
