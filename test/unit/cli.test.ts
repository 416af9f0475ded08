import t from 'tap';
import { mkdtempSync, writeFileSync, existsSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { generateBundle } from '../../src/jobs/certs/selfsigned.ts';
import { FIXTURES } from '../helpers/review.ts';
import { runCli, startServe } from '../helpers/process.ts';
import { get, post } from '../helpers/server.ts';

const tmp = mkdtempSync(join(tmpdir(), 'meshguard-cli-'));

t.test('help and usage errors', async (t) => {
  const help = await runCli(['--help']);
  t.equal(help.code, 0, '--help exits 0');
  t.match(help.stdout, 'meshguard check');
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const flag of ['--version', 'version']) {
    const v = await runCli([flag]);
    t.equal(v.code, 0, `${flag} exits 0`);
    t.equal(v.stdout, `meshguard ${pkg.version}\n`, `${flag} prints the package version`);
  }
  for (const cmd of ['serve', 'check', 'review', 'scan', 'verify']) {
    const r = await runCli([cmd, '--help']);
    t.equal(r.code, 0, `${cmd} --help exits 0`);
    t.match(r.stdout, `Usage: meshguard ${cmd}`);
  }
  const unknown = await runCli(['frobnicate']);
  t.equal(unknown.code, 2, 'an unknown command exits 2');
  const flag = await runCli(['check', '--nope']);
  t.equal(flag.code, 2, 'an unknown flag exits 2');
  t.match(flag.stderr, '--nope');
  for (const [name, args, want] of [
    ['a file given without -f', ['check', 'deploy.yaml'], /Unexpected argument 'deploy\.yaml'[^]*meshguard check --help/],
    ['a stray argument to scan', ['scan', 'extra'], /Unexpected argument 'extra'/],
    ['a flag without its value', ['serve', '--port'], /Option '--port <value>' argument missing/],
    ['an unknown flag to review', ['review', '--bogus'], /Unknown option '--bogus'[^]*meshguard review --help/],
  ] as const) {
    const r = await runCli([...args]);
    t.equal(r.code, 2, `${name}: exits 2`);
    t.match(r.stderr, want, `${name}: says what is wrong and where the flags are`);
    t.notMatch(r.stderr, /at .*\.ts:\d+|node:internal/, `${name}: no stack trace`);
  }
});

t.test('bad configuration stops the process with a message that names the key', async (t) => {
  const file = join(tmp, 'bad.yaml');
  const cases: [string, string[], string][] = [
    ['a bad mode', ['--mode', 'strict'], 'config mode: must be one of enforce, audit'],
    ['a port out of range', ['--port', '99999'], 'config server.port: must be between 0 and 65535'],
    ['a cert without a key', ['--cert-file', '/nonexistent.crt'], 'config server.keyFile: certFile and keyFile go together'],
  ];
  for (const [name, args, message] of cases) {
    const r = await runCli(['serve', ...args]);
    t.equal(r.code, 2, `${name} exits 2`);
    t.match(r.stderr, message, `${name}: ${message}`);
  }
  writeFileSync(file, 'mode: enforce\nexemptNamespacez: [a]\n');
  const unknown = await runCli(['serve', '--config', file]);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, 'config exemptNamespacez: unknown key', 'an unknown key in the file is named');
  writeFileSync(file, 'rules:\n  no-such-rule: {enabled: false}\n');
  const rule = await runCli(['serve', '--config', file]);
  t.match(rule.stderr, 'config rules.no-such-rule: no such rule', 'an unknown rule id is named');
  writeFileSync(file, 'hardening:\n  annotations:\n    "bad key!": x\n');
  t.match((await runCli(['serve', '--config', file])).stderr, 'config hardening.annotations.bad key!', 'a bad annotation key is named');
  t.match((await runCli(['serve', '--config', join(tmp, 'missing.yaml')])).stderr, 'cannot read', 'a missing file is reported');
});

t.test('meshguard check over manifests', async (t) => {
  const good = join(FIXTURES, 'rules/namespace-mesh-enrollment/good');
  const bad = join(FIXTURES, 'rules/namespace-mesh-enrollment/bad');
  const clean = await runCli(['check', '-f', good]);
  t.equal(clean.code, 0, 'clean manifests exit 0');
  t.match(clean.stdout, /4 object\(s\) checked, 0 violation\(s\)/);
  const dirty = await runCli(['check', '-f', bad]);
  t.equal(dirty.code, 1, 'violations exit 1');
  t.match(dirty.stdout, /a-namespace-labelled-istio-injection-disabled\.yaml:6:5: Namespace nsbad-injection-disabled: DENY \[namespace-mesh-enrollment\]/, "file, the field's line and column, object and rule");
  t.match(dirty.stdout, /fix: /);
  const json = await runCli(['check', '-f', bad, '--output', 'json']);
  t.equal(json.code, 1);
  const report = JSON.parse(json.stdout) as { objects: number; findings: { rule: string; action: string }[] };
  t.equal(report.objects, 6);
  t.ok(report.findings.every((f) => f.rule === 'namespace-mesh-enrollment' && f.action === 'deny'), 'json findings');
  const audit = await runCli(['check', '-f', bad, '--mode', 'audit']);
  t.match(audit.stdout, 'WARN [namespace-mesh-enrollment]', 'audit mode labels findings as warnings');
  const stdin = await runCli(['check', '-f', '-'], { input: 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    istio-injection: disabled\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n' });
  t.equal(stdin.code, 1, 'stdin with a List');
  t.match(stdin.stdout, '<stdin>:6:5: Namespace a: DENY', 'the line and column of the label, not of the document');
  t.match(stdin.stdout, '2 object(s) checked, 1 violation(s)');
  const missing = await runCli(['check', '-f', join(tmp, 'nope.yaml')]);
  t.equal(missing.code, 2, 'an unreadable file exits 2');
  t.match(missing.stdout, 'error: ENOENT');
  const broken = await runCli(['check', '-f', '-'], { input: 'a: [\n' });
  t.equal(broken.code, 2, 'invalid YAML exits 2');
  const scalar = await runCli(['check', '-f', '-'], { input: '42\n' });
  t.equal(scalar.code, 2, 'a document that is not a map exits 2');
  t.equal((await runCli(['check'])).code, 2, 'check without -f exits 2');
});

t.test('meshguard serve with generated certificates, review, SIGTERM', async (t) => {
  const dir = join(tmp, 'gen');
  const s = await startServe(['--port', '0', '--cert-dir', dir, '--log-level', 'warn']);
  t.teardown(() => s.stop('SIGKILL'));
  t.match(s.stderr(), `generated a self-signed CA and serving certificate in ${dir}`, 'says where the certificates are');
  t.ok(existsSync(join(dir, 'ca.crt')) && existsSync(join(dir, 'tls.crt')) && existsSync(join(dir, 'tls.key')));
  const leaf = new X509Certificate(readFileSync(join(dir, 'tls.crt')));
  t.match(leaf.subjectAltName, 'IP Address:127.0.0.1', 'SAN 127.0.0.1');
  t.match(leaf.subjectAltName, 'DNS:meshguard.meshguard.svc', 'SAN for the Kubernetes service');
  t.equal(leaf.publicKey.asymmetricKeyType, 'ec', 'ECDSA key');
  const review = await runCli(['review', '--url', s.url, '--ca', join(dir, 'ca.crt')]);
  t.equal(review.code, 1, 'the sample review is denied (exit 1)');
  t.match(review.stdout, '[namespace-mesh-enrollment] istio-injection is \\"disabled\\"');
  await new Promise((r) => setTimeout(r, 100));
  t.match(s.stdout(), /"audit":true.*"verdict":"denied"/, 'an audit record was written');
  t.notMatch(s.stdout(), /"object"/, 'the review itself is not logged');
  t.equal(await s.stop('SIGTERM'), 0, 'SIGTERM exits 0');
  const again = await startServe(['--port', '0', '--cert-dir', dir]);
  t.match(again.stderr(), 'reusing a self-signed CA', 'certificates are reused on restart');
  await again.stop();
});

async function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

t.test('certificate files are reloaded without a restart; a malformed pair keeps the old one', async (t) => {
  const dir = join(tmp, 'files');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  const first = await generateBundle({ sans: ['localhost', '127.0.0.1'] });
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  const swap = (cert: string, key: string): void => {
    writeFileSync(`${certFile}.new`, cert);
    writeFileSync(`${keyFile}.new`, key);
    renameSync(`${keyFile}.new`, keyFile);
    renameSync(`${certFile}.new`, certFile);
  };
  swap(first.cert, first.key);
  const s = await startServe(['--port', '0', '--cert-file', certFile, '--key-file', keyFile]);
  t.teardown(() => s.stop('SIGKILL'));
  const server = { url: s.url, ca: first.caCert };
  const fp1 = await servedFingerprint(s.port, first.caCert);
  t.equal(fp1, new X509Certificate(first.cert).fingerprint256, 'serves the configured certificate');

  // Steady requests while the files are swapped: none may fail.
  let failures = 0;
  let sent = 0;
  let running = true;
  const second = await generateBundle({ sans: ['localhost', '127.0.0.1'], ca: { cert: first.caCert, key: first.caKey } });
  const loop = (async () => {
    while (running) {
      sent++;
      try {
        const r = await get(server, '/healthz');
        if (r.status !== 200) failures++;
      } catch {
        failures++;
      }
    }
  })();
  swap(second.cert, second.key);
  const want = new X509Certificate(second.cert).fingerprint256;
  let fp2 = fp1;
  for (let i = 0; i < 50 && fp2 !== want; i++) {
    await new Promise((r) => setTimeout(r, 100));
    fp2 = await servedFingerprint(s.port, first.caCert);
  }
  running = false;
  await loop;
  t.equal(fp2, want, 'new handshakes see the new certificate');
  t.equal(failures, 0, `no request failed during the swap (${sent} sent)`);

  swap('-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n', second.key);
  await new Promise((r) => setTimeout(r, 2500));
  t.equal(await servedFingerprint(s.port, first.caCert), want, 'a malformed certificate keeps the old one in service');
  const metrics = await get(server, '/metrics');
  t.match(metrics.text, 'meshguard_certificate_reload_failing 1', 'and raises the alert metric');
  t.match(metrics.text, /meshguard_certificate_expiry_timestamp_seconds\{cert="leaf"\} \d+/, 'leaf expiry is exposed');
  await s.stop();
});
