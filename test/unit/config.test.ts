// The configuration is validated, defaulted and frozen once (src/config): every refusal names the
// key and says what is wrong; strings from flags and the environment become integers and booleans
// where the schema says so; the result is frozen and the input left as it was.
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { RULE_IDS } from '../../src/policies/registry.ts';

const load = (overrides: Record<string, unknown>) => loadConfig({ overrides, ruleIds: RULE_IDS });

t.test('a bad value is refused with a message that names the key', async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['a value outside an enum', { mode: 'strict' }, 'config mode: must be one of enforce, audit, got "strict"'],
    ['an integer out of range', { 'server.port': 99999 }, 'config server.port: must be between 0 and 65535, got 99999'],
    ['a string where an integer goes', { 'server.port': 'abc' }, 'config server.port: must be an integer, got "abc"'],
    ['a fraction where an integer goes', { 'server.port': 1.5 }, 'config server.port: must be an integer, got number 1.5'],
    ['a number where a string goes', { 'server.host': 5 }, 'config server.host: must be a string, got number 5'],
    ['a number where a nullable string goes', { 'server.certFile': 5 }, 'config server.certFile: must be a string, got number 5'],
    ['a word that is not a boolean', { 'cluster.inCluster': 'yes' }, 'config cluster.inCluster: must be true or false, got "yes"'],
    ['null for a section', { server: null }, 'config server: must be a map, got null'],
    ['a list item that does not match its pattern', { exemptNamespaces: ['ok', 'Bad_NS'] }, 'config exemptNamespaces[1]: "Bad_NS" does not match'],
    ['a map key that does not match its pattern', { hardening: { annotations: { 'bad key!': 'x' } } }, 'config hardening.annotations.bad key!: key does not match'],
    ['a wrong value inside a map of lists', { 'captureBypass.allow': { 'a/b': [1] } }, 'config captureBypass.allow.a/b[0]: must be a string, got number 1'],
    ['a list where a JSON map goes', { 'istioInstall.injectorValues': [] }, 'config istioInstall.injectorValues: must be a map, got an array'],
    ['a generated resource without a spec', { 'reconciler.serviceEntries': { x: {} } }, 'config reconciler.serviceEntries.x.spec: must be set'],
    ['a bad rule mode', { rules: { 'workload-host-network': { mode: 'x' } } }, 'config rules.workload-host-network.mode: must be one of inherit, enforce, audit, got "x"'],
    ['an unknown top-level key', { exemptNamespacez: ['a'] }, 'config exemptNamespacez: unknown key (known: mode, mutation,'],
    ['an unknown key in a section', { 'server.bogus': 1 }, 'config server.bogus: unknown key (known: host, port,'],
    ['an unknown rule id', { rules: { 'no-such-rule': { enabled: false } } }, 'config rules.no-such-rule: no such rule'],
  ];
  for (const [name, overrides, message] of cases) {
    t.throws(() => load(overrides), ConfigError, `${name}: a ConfigError`);
    try {
      load(overrides);
    } catch (err) {
      t.ok((err as Error).message.startsWith(message), `${name}: ${(err as Error).message}`);
    }
  }
});

t.test('defaults fill what is left out, strings from flags are coerced, and the result is frozen', async (t) => {
  const input = { server: { port: '9443' }, cluster: { inCluster: 'true' }, hardening: { labels: { a: 'b' } } };
  const before = structuredClone(input);
  const c = load(input);
  t.equal(c.server.port, 9443, 'an integer given as a string');
  t.equal(c.cluster.inCluster, true, 'a boolean given as a string');
  t.equal(c.server.host, '127.0.0.1', 'a default inside a section that was given');
  t.same(c.hardening, { labels: { a: 'b' }, annotations: { 'meshguard.dev/hardened': 'true' } }, 'a map default beside a given map');
  t.equal(c.reconciler.networkPolicies.enabled, false, 'a default inside a section that was left out');
  t.same(input, before, 'the input is left as it was');
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.exemptNamespaces) && Object.isFrozen(c.hardening.annotations), 'frozen all the way down');
  t.not(load({}).exemptNamespaces, load({}).exemptNamespaces, 'each load gets its own copy of a default list');
});
