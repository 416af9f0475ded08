// The admission bookkeeping behind load shedding (src/webhook/overload.ts): which requests are
// admitted, which are shed, and which request is cut to make room. Pure: no timers, no sockets;
// the lag and the clock come from outside, and a cut is reported through Ticket.onCut.
//
// The count and byte budgets are shared between sources (remote addresses): when a budget is
// full, the request cut to make room is one still receiving its body from the source that holds
// the most (max-min fairness), so one source, however many connections it opens, cannot starve
// another. A source that holds no more than the newcomer's source is never cut for it.

/** The bounds the gauge enforces (config server.*). */
export interface LoadLimits {
  /** Most requests in flight at once (headers read, response not yet finished). */
  readonly maxInFlight: number;
  /** Most body bytes received and held at once. A single request up to the body limit is always
   * admitted when nothing else is in flight. */
  readonly maxInFlightBytes: number;
  /** Shed while the event loop lags more than this (ms); 0 turns lag shedding off. */
  readonly maxEventLoopDelayMs: number;
  /** Slowest accepted body, bytes per second after the grace; 0 turns the check off. */
  readonly minBodyBytesPerSecond: number;
  /** Time from the headers before the body rate is checked (ms). */
  readonly bodyRateGraceMs: number;
}

export type ShedReason = 'inFlight' | 'bytes' | 'lag' | 'slowBody';

export interface LoadStats {
  readonly inFlight: number;
  readonly inFlightBytes: number;
  /** Highest in-flight count seen. */
  readonly peakInFlight: number;
  /** Requests shed or cut, by reason. */
  readonly shed: Readonly<Record<ShedReason, number>>;
  /** The last lag sample (ms). */
  readonly eventLoopLagMs: number;
  /** Sources with requests in flight. */
  readonly sources: number;
}

/** One admitted request, from its headers until its response is finished or its socket closes. */
export class Ticket {
  readonly source: string;
  /** performance.now() when the headers were read. */
  readonly startedMs: number;
  /** Body bytes received and held. */
  bytes = 0;
  /** Still receiving its body (only such requests can be cut). */
  receiving = true;
  released = false;
  /** Set when the gauge cut the request; the shell answers and closes. */
  cutFor: ShedReason | undefined;
  /** Called by the gauge when the request is cut (installed by the shell). */
  onCut: ((t: Ticket) => void) | undefined;

  constructor(source: string, startedMs: number) {
    this.source = source;
    this.startedMs = startedMs;
  }
}

interface Source {
  n: number;
  bytes: number;
  /** Its tickets still receiving a body, oldest first (insertion order). */
  readonly receiving: Set<Ticket>;
}

/** The admission bookkeeping; pure, no timers (the lag and the clock come from outside). */
export class LoadGauge {
  readonly #limits: LoadLimits;
  #inFlight = 0;
  #bytes = 0;
  #peak = 0;
  #lag = 0;
  readonly #sources = new Map<string, Source>();
  /** Every ticket still receiving a body, oldest first: what the rate sweep walks. */
  readonly #receiving = new Set<Ticket>();
  readonly #shed: Record<ShedReason, number> = { inFlight: 0, bytes: 0, lag: 0, slowBody: 0 };

  constructor(limits: LoadLimits) {
    if (!(limits.maxInFlight >= 1)) throw new Error(`maxInFlight must be at least 1, got ${limits.maxInFlight}`);
    if (!(limits.maxInFlightBytes >= 1)) throw new Error(`maxInFlightBytes must be at least 1, got ${limits.maxInFlightBytes}`);
    if (!(limits.minBodyBytesPerSecond >= 0)) throw new Error(`minBodyBytesPerSecond must be 0 or more, got ${limits.minBodyBytesPerSecond}`);
    this.#limits = limits;
  }

  #source(key: string): Source {
    let s = this.#sources.get(key);
    if (s === undefined) {
      s = { n: 0, bytes: 0, receiving: new Set() };
      this.#sources.set(key, s);
    }
    return s;
  }

  /** A receiving request of the source holding the most (by `by`): its oldest when counting
   * requests, its largest when counting bytes; undefined when that source holds no more than
   * `than` would with `extra` more (nothing fair to cut). */
  #victim(by: 'n' | 'bytes', than: Source | undefined, extra: number): Ticket | undefined {
    let worst: Source | undefined;
    for (const s of this.#sources.values()) {
      if (s.receiving.size > 0 && (worst === undefined || s[by] > worst[by])) worst = s;
    }
    if (worst === undefined) return undefined;
    if (than !== undefined && worst !== than && worst[by] <= than[by] + extra) return undefined;
    let pick: Ticket | undefined;
    for (const t of worst.receiving) {
      if (by === 'n') return t;
      if (pick === undefined || t.bytes > pick.bytes) pick = t;
    }
    return pick;
  }

  /** A Ticket: admitted (call release once); else why it is shed. `nowMs`: performance.now(). */
  admit(source: string, nowMs: number): Ticket | ShedReason {
    if (this.#limits.maxEventLoopDelayMs > 0 && this.#lag > this.#limits.maxEventLoopDelayMs) return this.#count('lag');
    if (this.#inFlight >= this.#limits.maxInFlight) {
      // Full: make room by cutting the heaviest source's oldest receiving request, when that
      // source holds more requests than the newcomer's would after admission.
      const victim = this.#victim('n', this.#sources.get(source) ?? { n: 0, bytes: 0, receiving: new Set() }, 1);
      if (victim === undefined || victim.source === source) return this.#count('inFlight');
      this.cut(victim, 'inFlight');
    }
    const t = new Ticket(source, nowMs);
    const s = this.#source(source);
    s.n++;
    s.receiving.add(t);
    this.#receiving.add(t);
    this.#inFlight++;
    if (this.#inFlight > this.#peak) this.#peak = this.#inFlight;
    return t;
  }

  #count(reason: ShedReason): ShedReason {
    this.#shed[reason]++;
    return reason;
  }

  /**
   * `n` more body bytes arrived for `t`. Over the byte budget, requests still receiving their
   * body are cut, heaviest source first, until the budget holds again (never the only request
   * in flight). Returns false when `t` itself was cut.
   */
  addBytes(t: Ticket, n: number): boolean {
    if (t.released || t.cutFor !== undefined) return false;
    t.bytes += n;
    this.#bytes += n;
    const s = this.#sources.get(t.source);
    if (s !== undefined) s.bytes += n;
    while (this.#bytes > this.#limits.maxInFlightBytes && this.#inFlight > 1) {
      const heaviest = this.#victim('bytes', undefined, 0);
      // Cutting a request that holds nothing frees nothing: then the newcomer's bytes go.
      const victim = heaviest !== undefined && heaviest.bytes > 0 ? heaviest : t;
      this.cut(victim, 'bytes');
      if (victim === t) break;
    }
    return t.cutFor === undefined;
  }

  /** The body is complete: the request is no longer cut for rate or budget. */
  bodyDone(t: Ticket): void {
    if (!t.receiving) return;
    t.receiving = false;
    // Only a request still receiving can be cut. The shell's callback holds the whole request,
    // decoded body included, and the ticket stays reachable from the connection until its next
    // request: dropped now, a finished review is garbage as soon as its answer is written.
    t.onCut = undefined;
    this.#receiving.delete(t);
    this.#sources.get(t.source)?.receiving.delete(t);
  }

  /** Cut `t` (it stops counting at once) and tell the shell. */
  cut(t: Ticket, reason: ShedReason): void {
    if (t.cutFor !== undefined || t.released) return;
    t.cutFor = reason;
    this.#shed[reason]++;
    const onCut = t.onCut;
    this.release(t);
    onCut?.(t);
  }

  release(t: Ticket): void {
    if (t.released) return;
    t.released = true;
    this.bodyDone(t);
    this.#inFlight--;
    this.#bytes -= t.bytes;
    const s = this.#sources.get(t.source);
    if (s !== undefined) {
      s.n--;
      s.bytes -= t.bytes;
      if (s.n === 0) this.#sources.delete(t.source);
    }
  }

  /** Cut every request whose body arrives slower than the minimum rate; returns how many. */
  sweepSlow(nowMs: number): number {
    const rate = this.#limits.minBodyBytesPerSecond;
    if (rate <= 0) return 0;
    const slow: Ticket[] = [];
    for (const t of this.#receiving) {
      // Oldest first: once one is within its grace, the younger ones are too.
      if (nowMs - t.startedMs <= this.#limits.bodyRateGraceMs) break;
      if (nowMs - t.startedMs > this.#limits.bodyRateGraceMs + (t.bytes * 1000) / rate) slow.push(t);
    }
    for (const t of slow) this.cut(t, 'slowBody');
    return slow.length;
  }

  set lagMs(ms: number) {
    this.#lag = ms;
  }

  stats(): LoadStats {
    return { inFlight: this.#inFlight, inFlightBytes: this.#bytes, peakInFlight: this.#peak, shed: { ...this.#shed }, eventLoopLagMs: this.#lag, sources: this.#sources.size };
  }
}
