// Egress reach, not spelling: service-entry-wildcard judges the union of a ServiceEntry's address
// ranges per family against serviceEntries.addressLimit, wildcard hosts against the Public Suffix
// List, and ports that resolution NONE turns into a passthrough; virtual-service-destination-subnets
// holds a VirtualService's tcp/tls destinationSubnets to the same limit. The fixture folders cover
// the common cases through admission, check and the real apiserver; these tables cover the edges.
import t from 'tap';
import type { KObject } from '../../src/core/request.ts';
import { addressIntervals, countText, isPassthroughProtocol, resolutionOf, unionSize, wildcardBreadth } from '../../src/policies/lib/egress-reach.ts';
import { destinationSubnets } from '../../src/policies/virtual-service-destination-subnets.ts';
import { config, failedRules, validate } from '../helpers/review.ts';

const TEAM = 'istio-config-team';

function se(spec: Record<string, unknown>, apiVersion = 'networking.istio.io/v1'): KObject {
  return { apiVersion, kind: 'ServiceEntry', metadata: { name: 'x', namespace: TEAM }, spec } as KObject;
}

const TLS = [{ number: 443, name: 'tls', protocol: 'TLS' }];
const TCP = [{ number: 5432, name: 'tcp', protocol: 'TCP' }];

function paths(o: KObject, c = config()): string[] {
  return validate(o, { config: c }).denials.map((d) => d.violation?.path ?? '');
}

t.test('address unions: IPv4 and IPv6 separately, halves and splits count like one range', async (t) => {
  const v4 = (xs: string[]): bigint => unionSize(xs.flatMap(addressIntervals), 'IPv4');
  const v6 = (xs: string[]): bigint => unionSize(xs.flatMap(addressIntervals), 'IPv6');
  t.equal(v4(['0.0.0.0/1', '128.0.0.0/1']), 1n << 32n, 'two IPv4 halves are all of IPv4');
  t.equal(v6(['::/1', '8000::/1']), 1n << 128n, 'two IPv6 halves are all of IPv6');
  t.equal(v4(['10.0.0.0/8', '10.1.0.0/16', '10.0.0.5']), 1n << 24n, 'ranges inside a range are counted once');
  t.equal(v4(['10.0.0.0/25', '10.0.0.128/25']), 256n, 'adjacent ranges merge');
  t.equal(v4(['10.1.2.3/8']), 1n << 24n, 'host bits are masked, as Envoy does');
  t.equal(v4(['192.0.2.1', '192.0.2.1/32', ' 192.0.2.1 ']), 1n, 'an IP, its /32 and surrounding spaces are one address');
  t.equal(v4(['::ffff:0.0.0.0/96']), 1n << 32n, 'IPv4-mapped IPv6 counts as IPv4 too');
  t.equal(v6(['::ffff:0.0.0.0/96']), 1n << 32n, '... and as IPv6');
  t.equal(v4(['2001:db8::/32']), 0n, 'an IPv6 range outside the mapped block adds no IPv4');
  t.equal(v6(['10.0.0.0/8']), 0n, 'an IPv4 range adds no IPv6');
  for (const junk of ['foo', '1', '0x7f.0.0.1', '1.2.3.4/33', '10.0.0.0/', '', 'unix:///sock']) t.same(addressIntervals(junk), [], `${JSON.stringify(junk)} names no address (istiod skips it)`);
  t.equal(countText(131072n), '131,072');
  t.equal(countText(1n << 80n), '2^80');
  t.equal(countText((1n << 80n) + 1n), 'more than 2^80');
});

t.test('the address limit: what passes and what is denied by default (IPv4 /16, IPv6 /48)', async (t) => {
  const cases: [string, string[], boolean][] = [
    ['a single host', ['203.0.113.10'], true],
    ['an ordinary /24', ['198.51.100.0/24'], true],
    ['exactly one /16', ['10.20.0.0/16'], true],
    ['two /17s adding up to one /16', ['10.20.0.0/17', '10.20.128.0/17'], true],
    ['three /17s', ['10.20.0.0/17', '10.20.128.0/17', '10.21.0.0/17'], false],
    ['a /15', ['10.20.0.0/15'], false],
    ['the two IPv4 halves', ['0.0.0.0/1', '128.0.0.0/1'], false],
    ['256 /24s in 256 different /16s (65,536 addresses: one /16)', Array.from({ length: 256 }, (_, i) => `${i}.1.2.0/24`), true],
    ['257 /24s', [...Array.from({ length: 256 }, (_, i) => `${i}.1.2.0/24`), '1.1.3.0/24'], false],
    ['an IPv6 /64', ['2001:db8:10::/64'], true],
    ['exactly one IPv6 /48', ['2001:db8:10::/48'], true],
    ['an IPv6 /47', ['2001:db8:10::/47'], false],
    ['the two IPv6 halves', ['::/1', '8000::/1'], false],
    ['every IPv4-mapped IPv6 address', ['::ffff:0.0.0.0/96'], false],
    ['a /95 around the IPv4-mapped block (under the IPv6 limit, all of IPv4)', ['::fffe:0:0/95'], false],
    ['a /24 in each family', ['198.51.100.0/24', '2001:db8::/120'], true],
  ];
  for (const [name, addresses, allowed] of cases) {
    const v = validate(se({ hosts: ['db.example.com'], addresses, ports: TCP, resolution: 'NONE' }));
    t.equal(v.response.response.allowed, allowed, `${name}: ${allowed ? 'allowed' : 'denied'}`);
    if (!allowed) t.same(failedRules(v), ['service-entry-wildcard'], `${name}: by service-entry-wildcard`);
  }
  const wide = se({ hosts: ['db.example.com'], addresses: ['10.0.0.0/8', '2001:db8::/32'], ports: TCP, resolution: 'STATIC', endpoints: [{ address: '10.0.0.1' }] });
  t.same(paths(wide), ['spec.addresses[1]', 'spec.addresses[0]'], 'one finding per family, at the single entry that exceeds it');
  t.same(paths(wide, config({ 'serviceEntries.addressLimit': { ipv4: 8, ipv6: 32 } })), [], 'the limit is configurable per family');
  t.same(paths(wide, config({ 'serviceEntries.addressLimit': { ipv4: 9, ipv6: 32 } })), ['spec.addresses[0]'], 'a /8 is over a limit of /9');
  const split = validate(se({ hosts: ['db.example.com'], addresses: ['0.0.0.0/2', '64.0.0.0/2', '128.0.0.0/2', '192.0.0.0/3', '240.0.0.1'], ports: TCP }));
  t.same(split.denials.map((d) => d.violation?.path), ['spec.addresses'], 'a split is one finding on the whole list');
  t.match(split.denials[0]?.violation?.message, 'addresses 0.0.0.0/2, 64.0.0.0/2, 128.0.0.0/2 and 2 more together cover 3,758,096,385 IPv4 addresses, more than one /16 allows (serviceEntries.addressLimit.ipv4)');
  t.throws(() => config({ 'serviceEntries.addressLimit': { ipv4: 0 } }), /serviceEntries\.addressLimit\.ipv4: must be between 1 and 32/, 'a limit of /0 (everything) cannot be configured');
});

t.test('the unspecified address: istiod binds the wildcard, so any size limit is beside the point', async (t) => {
  for (const a of ['0.0.0.0', '0.0.0.0/32', '::', '::/128']) {
    const v = validate(se({ hosts: ['db.example.com'], addresses: [a], ports: TLS, resolution: 'NONE' }));
    t.equal(v.response.response.allowed, false, `${a} is denied`);
    t.match(v.response.response.status?.message, 'unspecified address', `${a}: says why`);
  }
  t.equal(validate(se({ hosts: ['db.example.com'], addresses: ['0.0.0.1'], ports: TLS })).response.response.allowed, true, '0.0.0.1 is one address');
});

t.test('wildcard hosts against the Public Suffix List', async (t) => {
  const cases: [string, boolean][] = [
    ['*', true], // refused by the current Istio CRD schema; still seen offline and with older CRDs
    ['*.co.uk', true],
    ['*.com', true],
    ['*.github.io', true], // private section: every GitHub Pages site has its own owner
    ['*.s3.amazonaws.com', true], // private section: every bucket
    ['*.kawasaki.jp', true], // a wildcard rule of the list
    ['*.CO.UK.', true],
    ['*.internal', true],
    ['*.example.co.uk', false],
    ['*.storage.example.com', false],
    ['*.svc.cluster.local', false],
    ['*.corp.example', false], // an unlisted top-level domain: its second level is an owner's
    ['api.example.com', false],
  ];
  for (const [host, broad] of cases) {
    t.equal(wildcardBreadth(host) !== undefined, broad, `${host} is ${broad ? '' : 'not '}broad`);
    t.equal(validate(se({ hosts: [host], ports: TLS, resolution: 'NONE' })).response.response.allowed, !broad, `a ServiceEntry for ${host} is ${broad ? 'denied' : 'allowed'}`);
  }
  t.match(wildcardBreadth('*.github.io'), 'private section', 'the reason names the list section');
  t.notMatch(wildcardBreadth('*.co.uk'), 'private', 'an ICANN suffix is not called private');
  const allow = config({ 'serviceEntries.allowedWildcardHosts': ['*.co.uk', '*.github.io'] });
  t.equal(validate(se({ hosts: ['*.co.uk', '*.GitHub.io.'], ports: TLS }), { config: allow }).response.response.allowed, true, 'allow-listed public-suffix wildcards are allowed');
});

t.test('resolution NONE without addresses: which ports are passthroughs to every destination', async (t) => {
  const port = (protocol?: unknown): Record<string, unknown> => ({ number: 9000, name: 'p', ...(protocol === undefined ? {} : { protocol }) });
  const protocols: [unknown, boolean][] = [
    ['TCP', true],
    ['tcp', true],
    ['MONGO', true],
    ['MYSQL', true],
    ['REDIS', true],
    [undefined, true], // sniffed: the TCP chain catches what is not HTTP
    ['SOMETHING', true],
    ['DoubleHBONE', true], // istio's Parse lower-cases first, so this name never matches
    [7, true],
    ['HTTP', false],
    ['http2', false],
    ['GRPC', false],
    ['GRPC-Web', false],
    ['HTTP_PROXY', false],
    ['HTTPS', false],
    ['TLS', false],
    ['UDP', false],
  ];
  for (const [protocol, passthrough] of protocols) {
    t.equal(isPassthroughProtocol(protocol), passthrough, `protocol ${String(protocol)}`);
    const v = validate(se({ hosts: ['db.example.com'], ports: [port(protocol)], resolution: 'NONE' }));
    t.equal(v.response.response.allowed, !passthrough, `resolution NONE, protocol ${String(protocol)}, no addresses: ${passthrough ? 'denied' : 'allowed'}`);
  }
  const shapes: [string, Record<string, unknown>, boolean][] = [
    ['resolution unset (NONE is the default)', { hosts: ['a.example.com'], ports: TCP }, false],
    ['resolution 0 (NONE by number)', { hosts: ['a.example.com'], ports: TCP, resolution: 0 }, false],
    ['resolution DNS', { hosts: ['a.example.com'], ports: TCP, resolution: 'DNS' }, true],
    ['resolution STATIC with endpoints', { hosts: ['a.example.com'], ports: TCP, resolution: 'STATIC', endpoints: [{ address: '203.0.113.10' }] }, true],
    ['resolution NONE with an address', { hosts: ['a.example.com'], ports: TCP, resolution: 'NONE', addresses: ['203.0.113.10'] }, true],
    ['resolution NONE with an empty address list', { hosts: ['a.example.com'], ports: TCP, resolution: 'NONE', addresses: [] }, false],
    ['resolution NONE selecting workloads by label', { hosts: ['a.example.com'], ports: TCP, workloadSelector: { labels: { app: 'vm' } } }, true],
    ['resolution NONE with an empty selector', { hosts: ['a.example.com'], ports: TCP, workloadSelector: {} }, false],
    ['resolution NONE with endpoints (a schemaless cluster)', { hosts: ['a.example.com'], ports: TCP, endpoints: [{ address: '203.0.113.10' }] }, true],
    ['no ports', { hosts: ['a.example.com'] }, true],
    ['ports that are not a list', { hosts: ['a.example.com'], ports: { number: 1 } }, true],
  ];
  for (const [name, spec, allowed] of shapes) t.equal(validate(se(spec)).response.response.allowed, allowed, `${name}: ${allowed ? 'allowed' : 'denied'}`);
  const two = se({ hosts: ['a.example.com'], ports: [{ number: 5432, name: 'pg', protocol: 'TCP' }, { number: 443, name: 'tls', protocol: 'TLS' }, { number: 3306, name: 'my', protocol: 'MYSQL' }] });
  t.same(paths(two), ['spec.ports[0]', 'spec.ports[2]'], 'one finding per passthrough port, at its path');
  t.match(validate(two).response.response.status?.message, 'port 5432 (protocol TCP) with resolution NONE and no addresses is a passthrough');
  t.equal(resolutionOf(4), 'DYNAMIC_DNS', 'resolution numbers map to names');
  t.equal(resolutionOf('dns'), 'DNS');
  t.equal(validate(se({ hosts: ['*.example.com'], ports: TLS, resolution: 4 })).response.response.allowed, false, 'DYNAMIC_DNS written as 4 with a wildcard is denied');
});

t.test('odd shapes never make the rule throw', async (t) => {
  const shapes: Record<string, unknown>[] = [
    { hosts: 'x', addresses: 'x', ports: 'x' },
    { hosts: [null, 3, '*'], addresses: [null, 4, '10.0.0.0/8', {}], ports: [null, 'x', { protocol: {} }] },
    { resolution: {}, workloadSelector: { labels: 'x' }, addresses: [], endpoints: 'x', ports: [{}] },
    { hosts: ['*.'], addresses: ['/', '::/', '1.2.3.4/-1', 'fe80::1%eth0'] },
  ];
  for (const spec of shapes) {
    const v = validate(se(spec));
    t.same(v.results.filter((r) => r.status === 'error'), [], `${JSON.stringify(spec)}: no error result`);
  }
});

t.test('virtual-service-destination-subnets: tcp and tls subnets of one VirtualService united per family', async (t) => {
  const vs = (spec: Record<string, unknown>): KObject => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'x', namespace: TEAM }, spec }) as KObject;
  const tcp = (...subnets: string[][]): Record<string, unknown> => ({ hosts: ['db'], tcp: subnets.map((s) => ({ match: [{ destinationSubnets: s }], route: [{ destination: { host: 'db' } }] })) });
  const cases: [string, Record<string, unknown>, boolean][] = [
    ['no tcp or tls routes', { hosts: ['db'], http: [{ route: [{ destination: { host: 'db' } }] }] }, true],
    ['one /24', tcp(['198.51.100.0/24']), true],
    ['one /16 split over two routes', tcp(['10.1.0.0/17'], ['10.1.128.0/17']), true],
    ['three /17s over three routes', tcp(['10.1.0.0/17'], ['10.1.128.0/17'], ['10.2.0.0/17']), false],
    ['0.0.0.0/0', tcp(['0.0.0.0/0']), false],
    ['the IPv4 halves in one match', tcp(['0.0.0.0/1', '128.0.0.0/1']), false],
    ['a tcp half and a tls half', { hosts: ['db'], tcp: [{ match: [{ destinationSubnets: ['0.0.0.0/1'] }] }], tls: [{ match: [{ sniHosts: ['db'], destinationSubnets: ['128.0.0.0/1'] }] }] }, false],
    ['the IPv6 halves', tcp(['::/1', '8000::/1']), false],
    ['an IPv6 /64', tcp(['2001:db8::/64']), true],
  ];
  for (const [name, spec, allowed] of cases) {
    const v = validate(vs(spec));
    t.equal(v.response.response.allowed, allowed, `${name}: ${allowed ? 'allowed' : 'denied'}`);
    if (!allowed) t.same(failedRules(v), ['virtual-service-destination-subnets'], `${name}: by virtual-service-destination-subnets`);
  }
  t.same(
    destinationSubnets({ tcp: [{ match: [{ destinationSubnets: ['10.0.0.0/8'] }, { port: 1 }] }], tls: [null, { match: [{ destinationSubnets: [3, '::/0'] }] }] }).map((e) => e.path),
    ['spec.tcp[0].match[0].destinationSubnets[0]', 'spec.tls[1].match[0].destinationSubnets[1]'],
    'every subnet is found with its path; odd entries are skipped',
  );
  const halves = validate(vs({ hosts: ['db'], tcp: [{ match: [{ destinationSubnets: ['0.0.0.0/1'] }] }], tls: [{ match: [{ sniHosts: ['db'], destinationSubnets: ['128.0.0.0/1'] }] }] }));
  t.match(halves.response.response.status?.message, 'destination subnets 0.0.0.0/1, 128.0.0.0/1 together cover every IPv4 address, more than one /16 allows');
  t.same(halves.denials.map((d) => d.violation?.path), ['spec.tcp[0].match[0].destinationSubnets[0]'], 'the finding points at the first contributing subnet');
  const wide = vs(tcp(['10.0.0.0/8']));
  t.equal(validate(wide, { config: config({ 'serviceEntries.addressLimit': { ipv4: 8 } }) }).response.response.allowed, true, 'the ServiceEntry address limit applies');
  t.equal(validate({ ...wide, metadata: { name: 'x', namespace: 'local-path-storage' } }).response.response.allowed, true, 'exempt namespaces are exempt');
  t.equal(validate({ ...wide, metadata: { name: 'x', namespace: 'istio-system' } }).response.response.allowed, false, 'but not the root namespace');
  for (const spec of [{ tcp: 'x' }, { tcp: [{ match: 'x' }] }, { tls: [{ match: [{ destinationSubnets: 'x' }] }] }, 'x']) {
    t.same(validate(vs(spec as Record<string, unknown>)).results.filter((r) => r.status === 'error'), [], `${JSON.stringify(spec)}: no error result`);
  }
});
