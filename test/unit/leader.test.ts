// Leader election: the pure lease decisions with a fake clock, and the elector's rounds against
// an in-memory Lease store with optimistic concurrency (resourceVersion), like the API server.
import t from 'tap';
import {
  LeaderElector,
  LeaseConflict,
  leaseDecision,
  nextLease,
  releasedLease,
  renewDeadlineMs,
  shouldStepDown,
  type LeaseRecord,
  type LeaseStore,
  type StoredLease,
} from '../../src/kube/leader.ts';

const T0 = 1_700_000_000_000;
const lease = (holder: string, renewAgoS: number, durationS = 15, transitions = 0): LeaseRecord => ({
  holderIdentity: holder,
  leaseDurationSeconds: durationS,
  acquireTimeMs: T0 - 60_000,
  renewTimeMs: T0 - renewAgoS * 1000,
  leaseTransitions: transitions,
});

t.test('lease decisions', async (t) => {
  const rows: { name: string; lease: LeaseRecord | undefined; want: string }[] = [
    { name: 'no Lease: create it', lease: undefined, want: 'create' },
    { name: 'our own Lease: renew it', lease: lease('me', 3), want: 'renew' },
    { name: 'our own Lease, even expired: renew it', lease: lease('me', 60), want: 'renew' },
    { name: 'a released Lease (no holder): acquire it at once', lease: lease('', 0), want: 'acquire released' },
    { name: "another holder's fresh Lease: follow", lease: lease('other', 3), want: 'follow other' },
    { name: "another holder's Lease at exactly renewTime + duration: still follow", lease: lease('other', 15), want: 'follow other' },
    { name: "another holder's Lease past renewTime + duration: acquire it", lease: lease('other', 16), want: 'acquire expired' },
    { name: 'the holder\'s own leaseDurationSeconds counts, not ours', lease: lease('other', 16, 30), want: 'follow other' },
    { name: 'a Lease with no renewTime falls back to acquireTime', lease: { ...lease('other', 0), renewTimeMs: undefined }, want: 'acquire expired' },
  ];
  for (const row of rows) {
    const d = leaseDecision(row.lease, 'me', T0);
    const got = d.action === 'acquire' ? `acquire ${d.reason}` : d.action === 'follow' ? `follow ${d.holder}` : d.action;
    t.equal(got, row.want, row.name);
  }
});

t.test('the Lease written for each decision', async (t) => {
  const created = nextLease({ action: 'create' }, undefined, 'me', T0, 15);
  t.same(created, { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTimeMs: T0, renewTimeMs: T0, leaseTransitions: 0 }, 'create: acquired and renewed now');
  const renewed = nextLease({ action: 'renew' }, lease('me', 5, 15, 3), 'me', T0, 15);
  t.equal(renewed.acquireTimeMs, T0 - 60_000, 'renew keeps acquireTime');
  t.equal(renewed.renewTimeMs, T0, 'renew moves renewTime');
  t.equal(renewed.leaseTransitions, 3, 'renew is not a transition');
  const taken = nextLease({ action: 'acquire', reason: 'expired' }, lease('other', 20, 15, 3), 'me', T0, 15);
  t.equal(taken.leaseTransitions, 4, 'acquire counts a transition');
  t.equal(taken.acquireTimeMs, T0, 'acquire sets acquireTime');
  const released = releasedLease(created, T0 + 1000);
  t.equal(released.holderIdentity, '', 'release clears the holder');
  t.equal(leaseDecision(released, 'other', T0 + 1000).action, 'acquire', 'a follower takes a released Lease immediately');
});

t.test('renew deadline: a leader steps down before the Lease expires for others', async (t) => {
  t.equal(renewDeadlineMs(15, 5), 10_000, '2/3 of 15 s');
  t.equal(renewDeadlineMs(15, 12), 12_000, 'at least one renew period');
  t.equal(renewDeadlineMs(15, 30), 15_000, 'at most the lease duration');
  t.notOk(shouldStepDown(T0, T0 + 9_999, 10_000), 'within the deadline: keep leading');
  t.ok(shouldStepDown(T0, T0 + 10_000, 10_000), 'at the deadline: step down');
});

/** An in-memory Lease with resourceVersion checks, like the API server. */
class MemoryStore implements LeaseStore {
  readonly where = 'meshguard/test';
  lease: StoredLease | undefined;
  rv = 0;
  failing = false;
  get = async (): Promise<StoredLease | undefined> => {
    if (this.failing) throw new Error('connection refused');
    return this.lease;
  };
  create = async (r: LeaseRecord): Promise<StoredLease> => {
    if (this.failing) throw new Error('connection refused');
    if (this.lease !== undefined) throw new LeaseConflict('exists');
    return (this.lease = { ...r, resourceVersion: String(++this.rv) });
  };
  update = async (r: LeaseRecord, resourceVersion: string): Promise<StoredLease> => {
    if (this.failing) throw new Error('connection refused');
    if (this.lease?.resourceVersion !== resourceVersion) throw new LeaseConflict('stale');
    return (this.lease = { ...r, resourceVersion: String(++this.rv) });
  };
}

const quiet = { info() {}, warn() {} };

function candidate(store: LeaseStore, identity: string, clock: { now: number }, events: string[]): LeaderElector {
  return new LeaderElector({
    store,
    identity,
    leaseDurationSeconds: 15,
    renewSeconds: 5,
    onStartedLeading: () => events.push(`${identity} leads`),
    onStoppedLeading: () => events.push(`${identity} stops`),
    log: quiet,
    now: () => clock.now,
  });
}

t.test('two candidates: one leads; the other takes over after expiry or at once after a release', async (t) => {
  const store = new MemoryStore();
  const clock = { now: T0 };
  const events: string[] = [];
  const a = candidate(store, 'a', clock, events);
  const b = candidate(store, 'b', clock, events);
  await a.round();
  await b.round();
  t.ok(a.isLeader(), 'the first candidate creates the Lease and leads');
  t.notOk(b.isLeader(), 'the second follows');
  clock.now += 5000;
  await a.round();
  await b.round();
  t.equal(store.lease?.holderIdentity, 'a', 'renewals keep the Lease');
  t.notOk(b.isLeader());

  // a stops renewing (crashed): b waits out the duration, then takes over.
  clock.now += 15_000;
  await b.round();
  t.notOk(b.isLeader(), 'at renewTime + 15 s the Lease is not yet expired');
  clock.now += 1;
  await b.round();
  t.ok(b.isLeader(), 'past renewTime + 15 s the follower takes over');
  t.equal(store.lease?.leaseTransitions, 1);
  await a.round();
  t.notOk(a.isLeader(), 'the old leader sees another holder and stops leading');

  // b stops cleanly: the Lease is released and a takes it at its next round, without waiting.
  await b.stop();
  t.equal(store.lease?.holderIdentity, '', 'stop clears the holder');
  clock.now += 1000;
  await a.round();
  t.ok(a.isLeader(), 'the follower takes a released Lease at once');
  t.same(events, ['a leads', 'b leads', 'a stops', 'b stops', 'a leads']);
});

t.test('a race for the same Lease: the write with a stale resourceVersion loses', async (t) => {
  const store = new MemoryStore();
  store.lease = { ...lease('old', 60), resourceVersion: '7' };
  store.rv = 7;
  const clock = { now: T0 };
  const events: string[] = [];
  const a = candidate(store, 'a', clock, events);
  const b = candidate(store, 'b', clock, events);
  // Both read rv 7 before either writes.
  const realGet = store.get;
  let reads = 0;
  let release: () => void = () => {};
  const bothRead = new Promise<void>((r) => (release = r));
  store.get = async () => {
    const l = await realGet();
    if (++reads === 2) release();
    await bothRead;
    return l;
  };
  await Promise.all([a.round(), b.round()]);
  t.equal([a.isLeader(), b.isLeader()].filter(Boolean).length, 1, 'exactly one leads');
  t.equal(a.stats.conflicts + b.stats.conflicts, 1, 'the other got a conflict');
});

t.test('a leader that cannot renew steps down at the renew deadline', async (t) => {
  const store = new MemoryStore();
  const clock = { now: T0 };
  const events: string[] = [];
  const a = candidate(store, 'a', clock, events);
  await a.round();
  t.ok(a.isLeader());
  store.failing = true;
  clock.now += 5000;
  await a.round();
  t.ok(a.isLeader(), 'one failed renewal within the deadline: still leading');
  clock.now += 5000;
  await a.round();
  t.notOk(a.isLeader(), '10 s without renewal: stepped down (others may take over at 15 s)');
  t.same(events, ['a leads', 'a stops']);
});

t.test('the loop runs rounds until stopped', async (t) => {
  const store = new MemoryStore();
  const events: string[] = [];
  const a = new LeaderElector({ store, identity: 'a', leaseDurationSeconds: 2, renewSeconds: 1, onStartedLeading: () => events.push('lead'), onStoppedLeading: () => events.push('stop'), log: quiet });
  a.start();
  const deadline = Date.now() + 5000;
  while (!a.isLeader() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.ok(a.isLeader(), 'leads after its first round');
  await a.stop();
  t.notOk(a.isLeader());
  t.same(events, ['lead', 'stop']);
  t.equal(store.lease?.holderIdentity, '', 'released');
});
