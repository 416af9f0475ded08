// meshguard check's offline semantics for CI: an uninjected Pod manifest is not reported for
// lacking the sidecar the injector adds at admission; namespaces that are not in the input are
// given (--namespace), assumed meshed (with a note) or unknown; revisions; chart and kustomize
// directories are named with how to render them; --exclude. And 1,000 realistic manifests.
import t from 'tap';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkOffline, parseNamespaceFlag, runCheck } from '../../src/cli/check.ts';
import { globToRegExp, parseManifests } from '../../src/cli/manifests.ts';
import { realisticManifests } from '../../tools/bench/check-manifests.ts';
import { config, FIXTURES } from '../helpers/review.ts';

async function check(args: string[], input = ''): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runCheck(args, { out: (s) => void (out += s), err: () => {}, env: {}, stdin: async () => input });
  return { code, out };
}

const fixture = (rel: string) => join(FIXTURES, 'rules', rel);
const deployment = (ns: string, extra = '') =>
  `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: ${ns}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata:\n      labels: {app: web}${extra}\n    spec:\n      containers:\n        - name: app\n          image: nginx\n`;

t.test('a Pod manifest in Git is not reported just for being uninjected; an injected one is judged', async (t) => {
  const uninjected = await check(['-f', fixture('pod-sidecar-present/bad/a-pod-that-was-not-injected.yaml')]);
  t.equal(uninjected.code, 0, 'an uninjected Pod in a meshed namespace passes offline');
  t.match(uninjected.out, /note: 1 Pod\(s\) without Istio's sidecar were not judged by pod-sidecar-present: admission-time injection is not judged offline/, 'and the output says why');
  for (const name of ['a-pod-whose-istio-proxy-is-not-an-istio-image', 'a-pod-with-a-status-annotation-but-no-proxy', 'a-pod-whose-istio-proxy-is-a-plain-init-container']) {
    const r = await check(['-f', fixture(`pod-sidecar-present/bad/${name}.yaml`)]);
    t.equal(r.code, 1, `${name}: still reported`);
    t.match(r.out, 'DENY [pod-sidecar-present]');
  }
  const optOut = await check(['-f', fixture('workload-injection-opt-out/bad/a-pod-labelled-sidecar-inject-false.yaml')]);
  t.equal(optOut.code, 1, 'a Pod that opts out of injection is still reported (by workload-injection-opt-out)');
});

t.test('namespaces that are not in the input: assumed meshed with a note, given with --namespace, or unknown', async (t) => {
  const assumed = await check(['-f', '-'], deployment('team-a'));
  t.equal(assumed.code, 0, 'default: assumed meshed');
  t.match(assumed.out, /note: 1 namespace\(s\) not in the input were assumed meshed \(istio-injection=enabled\): team-a; give their labels with --namespace NAME=LABELS/);
  const unknown = await check(['-f', '-', '--unknown-namespaces', 'deny'], deployment('team-a'));
  t.equal(unknown.code, 1, '--unknown-namespaces deny: judged as unknown');
  t.match(unknown.out, 'DENY [workload-injection-opt-out]');
  const disabled = await check(['-f', '-', '--namespace', 'team-a=istio-injection=disabled,team=a'], deployment('team-a'));
  t.equal(disabled.code, 1, '--namespace gives the real labels: a namespace with injection disabled');
  t.notMatch(disabled.out, 'assumed meshed', 'a given namespace is not assumed');
  const given = await check(['-f', '-', '--namespace', 'team-a=istio-injection=enabled'], deployment('team-a'));
  t.equal(given.code, 0);
  const inInput = await check(['-f', '-'], `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {istio-injection: disabled}\n---\n${deployment('team-a')}`);
  t.equal(inInput.code, 1, 'a Namespace in the input wins: not assumed');
  t.same(parseNamespaceFlag('x=a=1,b=2'), ['x', { a: '1', b: '2' }]);
  t.same(parseNamespaceFlag('x'), ['x', {}]);
  t.throws(() => parseNamespaceFlag('X_Y=a=1'), /not a namespace name/);
  t.throws(() => parseNamespaceFlag('x=a'), /not key=value/);
});

t.test('--revision: a namespace on a revision that is installed', async (t) => {
  const ns = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n  labels: {istio.io/rev: canary}\n';
  t.equal((await check(['-f', '-'], ns)).code, 1, 'an unknown revision is denied');
  t.equal((await check(['-f', '-', '--revision', 'canary'], ns)).code, 0, '--revision canary makes it known');
  t.equal((await check(['-f', '-', '--revision', 'Bad_Rev'], ns).catch(() => ({ code: 2, out: '' }))).code, 2, 'a bad revision name is a usage error');
});

t.test('a Helm chart or kustomize directory is named with how to render it (exit 2); --exclude skips files', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'mg-check-'));
  const chart = join(root, 'chart');
  mkdirSync(join(chart, 'templates'), { recursive: true });
  writeFileSync(join(chart, 'Chart.yaml'), 'apiVersion: v2\nname: x\nversion: 0.1.0\n');
  writeFileSync(join(chart, 'templates', 'deploy.yaml'), '{{ if .Values.x }}\nkind: {{ .Values.kind }}\n{{ end }}\n');
  const kust = join(root, 'overlay');
  mkdirSync(kust);
  writeFileSync(join(kust, 'kustomization.yaml'), 'resources: [deploy.yaml]\ncommonAnnotations:\n  sidecar.istio.io/inject: "false"\n');
  writeFileSync(join(kust, 'deploy.yaml'), deployment('team-a'));
  const plain = join(root, 'plain');
  mkdirSync(join(plain, 'skipped'), { recursive: true });
  writeFileSync(join(plain, 'ok.yaml'), deployment('team-a'));
  writeFileSync(join(plain, 'skipped', 'bad.yaml'), deployment('team-a', '\n      annotations: {sidecar.istio.io/inject: "false"}'));

  const c = await check(['-f', chart]);
  t.equal(c.code, 2, 'a chart directory exits 2');
  t.match(c.out, /chart: error: is a Helm chart \(Chart\.yaml\): its templates are not manifests\. Render it and check the output: helm template RELEASE .*chart \[-f values\.yaml\] \| meshguard check -f -/);
  t.match(c.out, '0 object(s) checked', 'no template is parsed as YAML');
  const k = await check(['-f', kust]);
  t.equal(k.code, 2, 'a kustomize directory exits 2');
  t.match(k.out, /is a kustomize directory \(kustomization\.yaml\): check what it builds: kustomize build .*overlay \| meshguard check -f -/);
  const nested = await check(['-f', root]);
  t.equal(nested.code, 2, 'found below a directory too');
  t.match(nested.out, 'is a Helm chart');
  t.match(nested.out, 'is a kustomize directory');
  t.match(nested.out, /2 object\(s\) checked, 1 violation\(s\), 2 input error\(s\)/, 'the plain directory next to them is still checked');
  t.equal((await check(['-f', root, '--exclude', 'chart', '--exclude', 'overlay/**', '--exclude', 'overlay'])).code, 1, 'excluded chart and overlay: only plain/ is read');
  const excluded = await check(['-f', plain, '--exclude', 'skipped/**']);
  t.equal(excluded.code, 0, '--exclude skipped/** leaves only the clean file');
  t.match(excluded.out, '1 object(s) checked');
  t.equal((await check(['-f', plain, '--exclude', 'bad.yaml'])).code, 0, 'a glob without / matches a base name');
  t.ok(globToRegExp('a/**/b.yaml').test('a/b.yaml') && globToRegExp('a/**/b.yaml').test('a/x/y/b.yaml') && !globToRegExp('*.yaml').test('a/b.yaml'));
});

t.test('1,000 realistic manifests: no Pod reported just for being uninjected, planted violations found', async (t) => {
  const { text, kinds, planted } = realisticManifests(1000);
  const { manifests, errors } = parseManifests('repo.yaml', text);
  t.same(errors, []);
  t.equal(manifests.length, 1000);
  t.ok((kinds['Pod'] ?? 0) >= 50, `${kinds['Pod']} Pods`);
  const { findings, notes } = checkOffline(manifests, config());
  const byRule: Record<string, number> = {};
  for (const f of findings) byRule[f.rule] = (byRule[f.rule] ?? 0) + 1;
  t.same(byRule, { 'workload-host-network': planted.hostNetwork, 'workload-injection-opt-out': planted.optOut }, 'exactly the planted violations');
  t.notOk(findings.some((f) => f.rule === 'pod-sidecar-present'), 'no pod-sidecar-present finding');
  t.match(notes.join('\n'), new RegExp(`${kinds['Pod']} Pod\\(s\\) without Istio's sidecar were not judged`));
  const strict = checkOffline(manifests, config(), { uninjectedPods: 'judge', unknownNamespaces: 'deny' }).findings;
  t.ok(strict.filter((f) => f.rule === 'pod-sidecar-present').length > 0, "with admission's semantics the same Pods are reported (the test can fail)");
});
