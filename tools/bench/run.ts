// npm run bench: meshguard against the physical floor of a webhook (issue 7), side by side in one
// run on one machine. `npm run bench -- --help` lists the flags (flags.ts).
//
// What it does (see docs/performance.md for the method and the latest figures):
//  - builds meshguard like the container image does (npm run bundle's one file, into
//    .cache/bench/bundle, or .cache/bench-quick/bundle with --quick, run with
//    NODE_ENV=production) and the floor (tools/bench/floor.ts, bundled the same way), so neither
//    pays for Node's type stripping at run time;
//  - starts `meshguard serve --mode enforce` (all rules, default configuration) and the floor with
//    the same generated ECDSA P-256 certificate, both pinned to CPU 0 with taskset, this process
//    (the load generator) pinned to CPU 1;
//  - namespace cache: with a cluster, meshguard watches a real kube-apiserver holding 10, then
//    1 000, then 50 000 namespaces; without one, `unknownNamespace: allow` (HTTP path only);
//  - drives both with the same requests (Pod CREATE of an injected Pod, Deployment UPDATE with
//    object and oldObject, Namespace CREATE through /mutate, a denied Pod, and the four mixed) at
//    1, 2 and 50 keep-alive connections, alternating meshguard and floor run by run;
//  - measures per run: req/s, latency percentiles, server CPU per request (/proc utime+stime over
//    the measured window), peak RSS (VmHWM), the load generator's own CPU share;
//  - then: CPU per request as the object grows (1 KB .. 1 MB), full TLS handshakes (ECDSA P-256
//    against RSA-2048), the framework split (the floor, the floor with a 10 µs busy-wait per
//    request, the Fastify floor, meshguard's decision path on bare node:https and meshguard,
//    alternated on Pod CREATE x50), a --cpu-prof profile of meshguard under the 50-connection Pod
//    CREATE load, and the in-process microbenchmark (micro.ts).
import { handshakes, memoryAt50k, microbench, profiles, sizeScaling } from './costs.ts';
import { BENCH_HELP, readFlags } from './flags.ts';
import { Measurements } from './measure.ts';
import { injectedNamespaces } from './namespaces.ts';
import { memory, procAvailable } from './procstat.ts';
import { report } from './report.ts';
import { buildMix, buildRequests, KINDS, type BenchRequest } from './requests.ts';
import { setUp } from './setup.ts';
import { frameworkSplit, mainMatrix, NamespaceScaling, startMain } from './throughput.ts';

const settings = readFlags(process.argv.slice(2));
if (settings === 'help') {
  process.stdout.write(BENCH_HELP);
  process.exit(0);
}
if (!procAvailable()) {
  process.stderr.write('bench: /proc is needed for server CPU and memory (Linux only)\n');
  process.exit(2);
}

const bench = await setUp(settings);
const { bc } = bench;

const requestNamespaces = bc === undefined ? ['shop', 'payments', 'web'] : injectedNamespaces(10);
const scenarios: Record<string, BenchRequest[]> = {};
for (const k of KINDS) scenarios[k] = buildRequests(k, requestNamespaces, 128);
scenarios['mix'] = buildMix(requestNamespaces, 32);

const m = new Measurements(bench, scenarios);
const namespaces = new NamespaceScaling(bench, m, scenarios);
const { mg, fl } = await startMain(bench, m, namespaces, requestNamespaces);
await mainMatrix(bench, m, scenarios, mg, fl);
const mainMemory = { meshguard: memory(mg.pid), floor: memory(fl.pid) };
const framework = await frameworkSplit(bench, m, scenarios, mg, fl);
if (bc !== undefined) await namespaces.point(mg, fl, settings.mainNamespaces, settings.rounds);
const memory50k = await memoryAt50k(bench, m, namespaces, scenarios, mg, fl);
const sizeRows = await sizeScaling(bench, m, requestNamespaces[0] as string, mg, fl);
const afterSizeMemory = { meshguard: memory(mg.pid), floor: memory(fl.pid) };
const hsAgg = await handshakes(bench, m, scenarios, requestNamespaces, fl);
const profiled = settings.profile ? await profiles(bench, m, scenarios) : { runs: [], diff: [], diff2: [] };

await Promise.all([mg.stop(), fl.stop()]);
if (bc !== undefined) await bc.stop();

const micro = settings.micro ? await microbench(bench) : undefined;

report(bench, m, scenarios, { namespaces, mainMemory, framework, memory50k, sizeRows, afterSizeMemory, handshakes: hsAgg, profiles: profiled, micro });
