// Every rule's fixture folder through the real apiserver: good manifests are admitted, bad ones
// are refused by kubectl with the folder's rule named. Data-driven: a new fixture file needs no
// new code. The Namespaces in the fixtures are the cluster state; they are created before the
// webhooks are registered (so that deliberately unmeshed namespaces can exist), with a default
// ServiceAccount each (no controller-manager runs here).
import t from 'tap';

import { join } from 'node:path';
import type { KObject } from '../../src/core/request.ts';
import { FIXTURES, ruleFixtures, type Fixture } from '../helpers/review.ts';
import { startCluster } from './helpers/cluster.ts';
import { applyIstioCrds } from './helpers/istio.ts';
import { startMeshguard, sleep } from './helpers/meshguard.ts';

t.setTimeout(80 * 60 * 1000);

const fixtures = ruleFixtures();
const cluster = await startCluster();
t.teardown(() => cluster.stop());

await applyIstioCrds(cluster);

/** The state namespaces of all fixtures, checked for conflicting definitions. */
function stateNamespaces(all: readonly Fixture[]): Map<string, KObject> {
  const byName = new Map<string, { doc: KObject; file: string }>();
  const system = ['istio-system', 'meshguard'];
  for (const name of system) byName.set(name, { doc: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }, file: '(system)' });
  for (const f of all) {
    for (const ns of f.namespaces) {
      const name = String(ns.metadata?.name);
      const prev = byName.get(name);
      if (prev !== undefined && prev.file !== '(system)' && JSON.stringify(prev.doc.metadata?.labels ?? {}) !== JSON.stringify(ns.metadata?.labels ?? {})) {
        throw new Error(`namespace ${name} is defined differently in ${prev.file} and ${f.file}: give one a unique name`);
      }
      byName.set(name, { doc: ns, file: f.file });
    }
  }
  return new Map([...byName].map(([k, v]) => [k, v.doc]));
}

const namespaces = stateNamespaces(fixtures);
const setup = [...namespaces.values()].flatMap((ns) => [
  JSON.stringify(ns),
  JSON.stringify({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: ns.metadata?.name } }),
]);
await cluster.applyYaml(setup.join('\n---\n'));

const mg = await startMeshguard(cluster, { config: { revisions: ['canary', 'stable'] } });
t.teardown(() => mg.stop());
await mg.register('Fail');
await sleep(500); // the namespace cache has seen the setup namespaces (watch latency is milliseconds)

const DENIED = 'denied the request:';


for (const f of fixtures) {
  t.test(`${f.rule}: ${f.name} is ${f.expect === 'allow' ? 'admitted' : 'refused'} by the apiserver`, async (t) => {
    const docs = f.objects.map((o) => JSON.stringify(o)).join('\n---\n');
    const r = await cluster.kubectl(['apply', '-f', '-'], { as: 'tenant', input: docs });
    if (f.expect === 'allow') {
      t.equal(r.code, 0, `kubectl apply succeeds: ${r.stderr}`);
      t.notMatch(r.stderr, DENIED);
    } else {
      t.not(r.code, 0, 'kubectl apply fails');
      t.match(r.stderr, DENIED, 'refused by meshguard');
      t.match(r.stderr, `[${f.rule}]`, `names ${f.rule}`);
      t.match(r.stderr, 'Fix: ', 'and the fix');
    }
  });
}
