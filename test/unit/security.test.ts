// Security review of the server (issue 8 item 9; checklist C17, security table): TLS versions and
// ciphers as a client sees them, what `meshguard serve` writes to its logs, and what error answers
// reveal.
import t from 'tap';
import { connect, type ConnectionOptions } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClusterView } from '../../src/core/cluster-view.ts';
import { ERRORS } from '../../src/errors.ts';
import { BUILTIN_RULES } from '../../src/policies/registry.ts';
import type { ValidatingRule } from '../../src/core/types.ts';
import { startServe } from '../helpers/process.ts';
import { reviewBody } from '../helpers/review.ts';
import { captureLog, post, startServer } from '../helpers/server.ts';

const server = await startServer();
t.teardown(() => server.close());

interface Handshake {
  readonly protocol?: string;
  readonly cipher?: string;
  readonly error?: string;
  readonly code?: string;
}

function handshake(opts: Partial<ConnectionOptions>, port = server.port): Promise<Handshake> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, ca: server.ca, servername: 'localhost', ...opts }, () => {
      const r = { protocol: s.getProtocol() ?? '', cipher: s.getCipher().name };
      s.end();
      resolve(r);
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.message, code: e.code ?? '' }));
  });
}

// The client's own OpenSSL refuses TLS 1.0/1.1 and weak suites at its default security level and
// would fail before sending anything; SECLEVEL=0 makes it offer them, so the refusal we see is the
// server's (an alert received from it).
const OLD_CLIENT = 'ALL:@SECLEVEL=0';

t.test('TLS 1.0 and 1.1 handshakes are refused by the server', async (t) => {
  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    const r = await handshake({ minVersion: version, maxVersion: version, ciphers: OLD_CLIENT });
    t.ok(r.error !== undefined, `${version}: refused (${r.code}: ${r.error})`);
    t.notMatch(r.code ?? '', /NO_PROTOCOLS_AVAILABLE|NO_CIPHERS_AVAILABLE/, `${version}: the client did offer it; the server said no`);
    t.match(r.error ?? '', /alert protocol version|unsupported protocol|wrong version/i, `${version}: a protocol-version refusal`);
  }
});

t.test('TLS 1.2 only with AEAD ciphers; CBC suites are refused', async (t) => {
  for (const cipher of ['ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384', 'ECDHE-ECDSA-AES128-SHA', 'ECDHE-RSA-AES128-SHA256', 'AES128-SHA256', 'AES128-GCM-SHA256']) {
    const r = await handshake({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: `${cipher}:@SECLEVEL=0` });
    t.ok(r.error !== undefined, `TLS 1.2 with ${cipher} only is refused (${r.error ?? `negotiated ${r.cipher}`})`);
  }
  for (const cipher of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
    const r = await handshake({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: cipher });
    t.same([r.protocol, r.cipher], ['TLSv1.2', cipher], `TLS 1.2 with ${cipher} works`);
  }
  const any12 = await handshake({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: OLD_CLIENT });
  t.match(any12.cipher ?? '', /GCM|CHACHA20/, `a TLS 1.2 client offering everything gets an AEAD suite (${any12.cipher})`);
  t.match(any12.cipher ?? '', /^ECDHE/, 'with forward secrecy');
});

t.test('TLS 1.3 works and is what a modern client negotiates', async (t) => {
  const r = await handshake({});
  t.equal(r.protocol, 'TLSv1.3', `default client: ${r.protocol} ${r.cipher}`);
  const only13 = await handshake({ minVersion: 'TLSv1.3' });
  t.equal(only13.protocol, 'TLSv1.3', 'a TLS 1.3-only client connects');
});

t.test('no AdmissionReview is logged: secret values never reach stdout or stderr (default and debug levels)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshguard-security-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const level of [undefined, 'debug'] as const) {
    const secret = `s3cr3t-${randomBytes(12).toString('hex')}`;
    const b64 = Buffer.from(secret).toString('base64');
    const s = await startServe(['--port', '0', '--cert-dir', join(dir, 'certs'), ...(level === undefined ? [] : ['--log-level', level])]);
    try {
      const target = { url: s.url, ca: readFileSync(join(dir, 'certs', 'ca.crt'), 'utf8') };
      const reviews: [string, string, unknown][] = [
        ['a Secret (allowed: no rule covers it)', '/validate', reviewBody({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'team-a' }, data: { password: b64 }, stringData: { token: secret } })],
        ['a denied Namespace carrying the value in an annotation', '/validate', reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a', labels: { 'istio-injection': 'disabled' }, annotations: { 'example.com/token': secret } } })],
        ['a denied Pod with the value in an env var', '/validate', reviewBody({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'team-a' }, spec: { hostNetwork: true, containers: [{ name: 'app', image: 'app', env: [{ name: 'TOKEN', value: secret }] }] } })],
        ['a mutated Namespace', '/mutate', reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-b', annotations: { 'example.com/token': secret } } })],
        ['an invalid review', '/validate', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'x', kind: 'broken', object: { token: secret } } }],
      ];
      for (const [name, path, body] of reviews) {
        const r = await post(target, path, JSON.stringify(body));
        t.ok(r.status === 200 || r.status === 400, `${name}: answered ${r.status}`);
      }
      const notJson = await post(target, '/validate', `{"token": "${secret}", oops}`);
      t.equal(notJson.status, 400, 'a body that is not JSON is refused');
      await new Promise((r) => setTimeout(r, 300));
      const out = s.stdout() + s.stderr();
      t.ok(out.includes('"verdict":"denied"'), `level ${level ?? 'default (info)'}: the denials were logged as audit records`);
      t.notOk(out.includes(secret), `level ${level ?? 'default (info)'}: the secret value is nowhere in stdout or stderr`);
      t.notOk(out.includes(b64), `level ${level ?? 'default (info)'}: nor its base64`);
      t.notMatch(out, /"object":|"oldObject":|"request":\{/, `level ${level ?? 'default (info)'}: no AdmissionReview or object is logged`);
    } finally {
      await s.stop();
    }
  }
});

t.test('error answers carry no stack trace or file path, including an internal error', async (t) => {
  const STACKY = /\bat [^\n]*\(?[/\\][^\n]*:\d+|\/work\/|node_modules|\.ts:\d+|\.js:\d+|file:\/\/|Error: /;
  // An internal error: the cluster state throws (outside any rule) with a path in its message.
  const broken: ClusterView = {
    source: 'cluster',
    namespace() {
      throw new Error('boom at /work/main/src/cluster/cache.ts:42 with token s3cr3t');
    },
    knownRevisions: () => new Set(),
    synced: () => true,
  };
  const { lines: logged, log } = captureLog();
  const internal = await startServer({}, { cluster: broken, log });
  t.teardown(() => internal.close());
  const r = await post(internal, '/validate', JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'team-a' }, spec: { containers: [{ name: 'a', image: 'a' }] } })));
  t.equal(r.status, 500, 'an internal error is a 500');
  t.same(r.json(), { statusCode: 500, code: ERRORS.INTERNAL.code, error: ERRORS.INTERNAL.summary, message: ERRORS.INTERNAL.summary }, 'with only the coded body');
  t.notMatch(r.text, STACKY, 'no stack, no path');
  t.notMatch(r.text, /boom|s3cr3t/, 'and not the error message either');
  t.same(logged.map((l) => [l.level, l.msg]), [['error', 'unexpected error']], "the operator's log gets the internal error, once");
  t.match((logged[0]?.obj['err'] as Error | undefined)?.message, /^boom at/, 'with the error itself');
  t.equal(logged[0]?.obj['url'], '/validate', 'and the path');

  // A rule that throws: an error result, denied in enforce; the message names the rule, not a stack.
  const thrower: ValidatingRule = {
    id: 'always-throws',
    type: 'validating',
    title: 'throws',
    fix: 'none',
    match: { kinds: [{ group: '', kind: 'Namespace' }], operations: ['CREATE'] },
    webhook: [],
    validate() {
      throw new TypeError("Cannot read properties of undefined (reading 'x')");
    },
  };
  const throwing = await startServer({}, { rules: BUILTIN_RULES.withValidating([thrower]) });
  t.teardown(() => throwing.close());
  const d = await post(throwing, '/validate', JSON.stringify(reviewBody({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } })));
  t.equal(d.json().response.allowed, false, 'a throwing rule denies (fail closed)');
  t.match(d.json().response.status.message, /always-throws/, 'naming the rule');
  t.notMatch(d.text, /\bat [^\n]*:\d+|\.ts:\d+|\/work\//, 'with no stack or path');

  // Every coded error seen from outside: none has a stack or a path.
  for (const [name, path, body, headers] of [
    ['not JSON', '/validate', 'nope', { 'content-type': 'application/json' }],
    ['wrong media type', '/validate', '{}', { 'content-type': 'text/yaml' }],
    ['no such route', '/nope', '{}', { 'content-type': 'application/json' }],
    ['poisoned', '/mutate', '{"__proto__":{}}', { 'content-type': 'application/json' }],
    ['bad content-length', '/validate', '{}', { 'content-type': 'application/json', 'content-length': 'abc' }],
  ] as const) {
    const e = await post(server, path, body, { ...headers }).catch((err: Error) => ({ status: 0, text: err.message }));
    t.notMatch(e.text, STACKY, `${name}: ${e.status}, no stack or path`);
  }
  // Malformed HTTP below Fastify: Node answers 400 with no body.
  const raw = await new Promise<string>((resolve) => {
    const sock = connect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' }, () => sock.write('GARBAGE / HTTP/9.9\r\n\r\n'));
    let text = '';
    sock.on('data', (c: Buffer) => (text += c.toString()));
    sock.on('close', () => resolve(text));
    sock.on('error', () => resolve(text));
  });
  t.match(raw, /^HTTP\/1\.1 400/, 'a malformed request line gets 400');
  t.notMatch(raw, STACKY, 'without a stack');
  // Plain HTTP on the TLS port is not answered in clear.
  const plain = await new Promise<string>((resolve) => {
    const sock = netConnect({ host: '127.0.0.1', port: server.port }, () => sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    let text = '';
    sock.on('data', (c: Buffer) => (text += c.toString('latin1')));
    sock.on('close', () => resolve(text));
    sock.on('error', () => resolve(text));
    setTimeout(() => sock.destroy(), 3000);
  });
  t.notMatch(plain, /"status":"ok"/, 'plain HTTP gets no answer in clear');
});
