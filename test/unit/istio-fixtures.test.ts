// What real Istio produces, judged by meshguard: every file under test/fixtures/istio/admit must be
// admitted and every file under deny must be denied. The files come from the pinned istioctl
// (`istioctl kube-inject` of Istio's samples and of pods that customise Istio's containers, in
// every install variant; the istio/gateway chart) and from a live istiod (its Gateway API gateway
// and waypoint Deployments and Pods); test/fixtures/istio/generate.ts and
// test/e2e/istio-live.test.ts write them, and test/e2e/istio-fixtures-fresh.test.ts checks that
// they match the pinned Istio.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KObject } from '../../src/core/request.ts';
import { config, failedRules, FIXTURES, loadYaml, ns, state, TENANT, validate } from '../helpers/review.ts';

const DIR = join(FIXTURES, 'istio');

/** The install variants' namespaces need the revision canary and its tag prod; the mesh-wide excluded range is the platform's. */
const CONFIG = config({
  revisions: ['canary', 'prod'],
  // The platform's mesh-wide value (values.global.proxy.excludeIPRanges), as the injector has it.
  istioInstall: { injectorValues: { global: { proxy: { excludeIPRanges: '10.96.0.0/12' } } } },
  controllerUsers: ['system:kube-controller-manager'],
});

interface Case {
  readonly verdict: 'admit' | 'deny';
  readonly name: string;
  readonly file: string;
  readonly user: { username: string; groups: string[] };
  readonly namespaces: KObject[];
  readonly objects: KObject[];
}

function cases(): Case[] {
  const out: Case[] = [];
  for (const verdict of ['admit', 'deny'] as const) {
    for (const f of readdirSync(join(DIR, verdict)).filter((f) => f.endsWith('.yaml')).sort()) {
      const file = join(DIR, verdict, f);
      const as = /^# as: (.+)$/m.exec(readFileSync(file, 'utf8'))?.[1];
      const docs = loadYaml(file);
      out.push({
        verdict,
        name: f.replace(/\.yaml$/, '').replaceAll('-', ' '),
        file,
        user: as === undefined ? { ...TENANT, groups: [...TENANT.groups] } : { username: as, groups: ['system:authenticated'] },
        namespaces: docs.filter((d) => d.kind === 'Namespace'),
        objects: docs.filter((d) => d.kind !== 'Namespace'),
      });
    }
  }
  return out;
}

const all = cases();

t.test('the fixture set covers every install variant, both verdicts, gateways and waypoints', async (t) => {
  const names = all.map((c) => c.name).join('\n');
  for (const words of ['with sidecar injection', 'with the istio cni', 'by revision canary', 'by revision tag prod', 'with a mesh wide excluded range', 'in an ambient namespace', 'gateway chart', 'native sidecars turned on', 'native sidecars turned off', 'from istioctl kube inject']) {
    t.match(names, words, `a fixture ${words}`);
  }
  t.ok(all.filter((c) => c.verdict === 'deny').length >= 10, 'at least ten forged or narrowed captures');
});

for (const c of all) {
  t.test(`${c.name} is ${c.verdict === 'admit' ? 'admitted' : 'denied'}`, async (t) => {
    t.ok(c.objects.length > 0, 'the file has an object under test');
    const st = state(c.namespaces.map((n) => ns(String(n.metadata?.name), (n.metadata?.labels ?? {}) as Record<string, string>)), ['canary', 'prod']);
    for (const o of c.objects) {
      const v = validate(o, { config: CONFIG, state: st, user: c.user, namespace: String(o.metadata?.namespace ?? '') });
      const failed = failedRules(v);
      if (c.verdict === 'admit') {
        t.same(failed, [], `${o.kind} ${String(o.metadata?.name)}: no rule fails${failed.length ? `: ${v.response.response.status?.message ?? ''}` : ''}`);
      } else {
        t.equal(v.response.response.allowed, false, `${o.kind} ${String(o.metadata?.name)} is denied`);
        t.ok(failed.includes('pod-sidecar-present') || failed.includes('workload-capture-bypass'), `by the capture rules (${failed.join(', ')})`);
      }
    }
  });
}
