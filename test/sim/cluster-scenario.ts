import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import type { LockHandle } from "../../src/cluster/replicated-map.ts";
import { BlazeError } from "../../src/errors.ts";
import type { Clock, TimerHandle } from "../../src/transport/clock.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { flush } from "./sim-helpers.ts";

/**
 * Seeded simulations of the cluster level: replicated state map and locks on the simulated network,
 * under loss, duplication, reordering, crashes (the coordinator's above all), restarts (new members,
 * and members restarted in place: same id, next incarnation), graceful leaves, partitions (in quorum
 * mode) and forward jumps of members' clocks. Besides the mixed schedule, a kind targets one hazard:
 * - `quorum-change`: five members in quorum mode; two are cut off, one of the three others misses the
 *   new term's sync, then the cut moves (two against three) — the agreed set changes only through a
 *   majority of the old one, so no two sides ever take writes;
 * - `restarts`: three members in quorum mode restarted in place, one after the other and two at once,
 *   some while partitioned — once all are back the map takes writes again, nothing acknowledged lost;
 * - `drop-together`: without quorum, the coordinator and a lock holder crash together — fencing tokens
 *   never repeat;
 * - `deposed`: quorum mode, the coordinator cut off alone while its application writes — it stops
 *   being master before another is elected, and what it showed its application survives;
 * - `new-process`: three members in quorum mode; a member's process starts again under the same id
 *   (as an insider identity's does: a later incarnation, and a term memory of its own), alone or while
 *   another is cut off, then joins the one cut off — it forgot the terms of its earlier run, so its word
 *   never lets a side serve that is not a quorum of them: no two masters.
 *
 * Every member runs a random workload (puts, removes, compare-and-set, atomic batches, lock → writes
 * under the fencing token → release, and a journal of unique keys) and every member's stream of map
 * events is checked as it happens:
 * - fencing tokens only grow: every lock grant carries a token above every token seen before (a
 *   renewal keeps its token);
 * - a locked entry takes writes only from its holder, and a write made under a token only while that
 *   token holds the lock — so no two members ever have writes accepted under valid leases of one key;
 * - no request is applied twice: a value written once is in at most one applied change of the history
 *   a member follows (a snapshot that replaces a history never agreed on starts the count afresh).
 * - at most one member is master (serving) at any moment;
 * - no fencing token is handed to two lock handles, at any members;
 * - with quorum, a write the coordinator showed its own application (committed) is never lost.
 * Every member runs two workload lanes, so that a member's own tasks queue behind each other for locks;
 * lock requests time out and are withdrawn, releases that fail are tried again.
 * At the end, after the network heals and the workload stops, every running member's replica holds the
 * same entries (value and version) and locks — none: every lock was released, withdrawn or freed by its
 * holder's exit — every journal write that was acknowledged is there (with quorum, or when no partition
 * happened: an acknowledged write survives any coordinator crash), and the records of applied requests
 * are bounded.
 */

export const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;
const GROUP = "state";
const KEYS = 6;
/** Prints every change of this key at every member (to study a failing seed). */
const TRACE_KEY = typeof process === "undefined" ? undefined : process.env.BLAZE_TRACE_KEY;
/** Errors a workload operation may meet under faults; anything else is a violation. */
const EXPECTED = new Set(["LOCKED", "STALE_TOKEN", "VERSION_MISMATCH", "TIMEOUT", "NO_QUORUM", "CLOSED", "ILLEGAL_STATE", "NOT_FOUND", "UNREACHABLE"]);

/** A member's clock that can jump forward (a monotonic clock may: a suspended VM, say). Timers keep their durations. */
class JumpyClock implements Clock {
  offset = 0;
  constructor(private readonly base: Clock) {}
  now(): number {
    return this.base.now() + this.offset;
  }
  setTimer(delayMs: number, fn: () => void): TimerHandle {
    return this.base.setTimer(delayMs, fn);
  }
  defer(fn: () => void): void {
    this.base.defer(fn);
  }
}

interface Proc {
  readonly index: number;
  /** The label of the random source its member id was drawn from (a new process under the same id draws it again). */
  readonly idSource: string;
  readonly host: string;
  readonly channel: ClusterChannel;
  readonly clock: JumpyClock;
  status: "running" | "crashed" | "left" | "restarting";
  /** The highest fencing token seen in this member's event stream. */
  maxToken: number;
  /** Locks as this member's event stream says. */
  readonly locks: Map<string, { holder: string; token: number }>;
  /** Applied (not resync) changes per written value. */
  readonly applied: Map<string, number>;
  readonly versions: Map<string, number>;
}

export type ClusterScenarioKind = "mixed" | "quorum-change" | "restarts" | "drop-together" | "deposed" | "new-process";

export interface ClusterScenarioResult {
  readonly seed: number;
  readonly kind: ClusterScenarioKind;
  readonly quorum: boolean;
  readonly loss: number;
  readonly members: number;
  readonly crashes: number;
  readonly coordinatorCrashes: number;
  readonly partitions: number;
  readonly jumps: number;
  readonly acknowledged: number;
  readonly journal: number;
  readonly lockWrites: number;
  readonly refusedStale: number;
  readonly retried: number;
  readonly deduplicated: number;
  readonly pulls: number;
  readonly restarts: number;
  readonly tokens: number;
  readonly cancels: number;
  readonly finalWrite: "ok" | "no-quorum";
}

/** Members whose applied-request records a replica may keep beyond those running (sequencer.ts). */
const DEPARTED_REMEMBERED = 64;

export async function runClusterScenario(seed: number, kind: ClusterScenarioKind = "mixed"): Promise<ClusterScenarioResult> {
  const rng = new SeededRandom(seed);
  const quorum = kind === "mixed" ? rng.next() < 0.5 : kind !== "drop-together";
  const loss = rng.next() < 0.3 ? 0 : rng.next() * 0.1;
  const net = new SimulatedNetwork({
    seed,
    defaultLink: { loss, duplicate: rng.next() * 0.05, reorder: rng.next() * 0.1 },
  });
  const clock = net.clock;
  const procs: Proc[] = [];
  const violations: string[] = [];
  const log: string[] = [];
  const note = (text: string) => log.push(`${clock.now().toFixed(1)} ${text}`);
  const violation = (text: string) => violations.push(`${clock.now().toFixed(1)} ${text}`);
  const journal = new Map<string, string>();
  let acknowledged = 0;
  let lockWrites = 0;
  let refusedStale = 0;
  let nextIndex = 0;
  let valueSeq = 0;
  let workload = true;
  let partitioned = false;
  let restarts = 0;
  /** Every fencing token a lock handle got, and who got it. */
  const tokens = new Map<number, string>();
  /** Journal values a member showed its application while it was master (committed there). */
  const shownByMaster = new Map<string, string>();

  /** Starts a member on `host`: a new one, or — `sameIdAs` — a new process under that member's id (a later incarnation, a term memory of its own). */
  const spawn = async (host: string, sameIdAs?: Proc): Promise<Proc> => {
    const index = nextIndex++;
    const idSource = sameIdAs?.idSource ?? `p${index}`;
    const jumpy = new JumpyClock(clock);
    const channel = new ClusterChannel({
      name: `p${index}`,
      transport: net.transportFactory(host),
      clock: jumpy,
      // The member id is the first thing drawn from this source: the same source, the same id.
      random: net.random.fork(idSource),
      incarnation: sameIdAs === undefined ? index + 1 : sameIdAs.channel.incarnation + 1_000,
      groups: [GROUP],
      ...TIMING,
      // A process that starts alone knows nothing of the group it was in (as at a first start): only a
      // majority of the intended size keeps it from taking writes on its own.
      state: { quorum, requestTimeoutMs: 2_000, lockTimeoutMs: 300, ...(kind === "new-process" ? { minimumMembers: 2 } : {}) },
    });
    const proc: Proc = { index, idSource, host, channel, clock: jumpy, status: "running", maxToken: 0, locks: new Map(), applied: new Map(), versions: new Map() };
    procs.push(proc);
    note(`start p${index}@${host} ${channel.id.slice(0, 8)}${sameIdAs === undefined ? "" : ` (a new process of p${sameIdAs.index})`}`);
    if (sameIdAs !== undefined && channel.id !== sameIdAs.channel.id) throw new Error(`a new process meant to have the id of another member has its own: ${channel.id} vs ${sameIdAs.channel.id}`);
    watch(proc);
    if (TRACE_KEY !== undefined) {
      channel.on("viewChange", ({ view }) => console.log(`${clock.now().toFixed(1)} p${index} view ${view.id.counter} [${view.members.map((m) => m.name).join(",")}] coordinator ${view.coordinator.name}`));
    }
    channel.on("error", ({ error, stage }) => {
      if (proc.status === "running" && stage !== "transport") violation(`p${index} reported an error (${stage}): ${error.message}`);
    });
    await channel.start();
    channel.addToGroup(GROUP, { timeoutMs: 3_600_000 }).catch((error: unknown) => {
      if (proc.status === "running") violation(`p${index} failed to join: ${String(error)}`);
    });
    void runWorkload(proc, 0);
    void runWorkload(proc, 1);
    return proc;
  };

  const watch = (proc: Proc) => {
    const map = proc.channel.map;
    map.on("lock", (event) => {
      if (TRACE_KEY !== undefined && event.key === TRACE_KEY) console.log(`${clock.now().toFixed(1)} p${proc.index} lock ${event.key} ${event.holder.id.slice(0, 8)} token ${event.fencingToken} resync=${event.resync}`);
      const current = proc.locks.get(event.key);
      const renewal = current !== undefined && current.token === event.fencingToken && current.holder === event.holder.id;
      if (!event.resync && !renewal && event.fencingToken <= proc.maxToken) {
        violation(`p${proc.index}: lock on ${event.key} granted with token ${event.fencingToken}, not above ${proc.maxToken}`);
      }
      proc.maxToken = Math.max(proc.maxToken, event.fencingToken);
      proc.locks.set(event.key, { holder: event.holder.id, token: event.fencingToken });
    });
    map.on("unlock", (event) => {
      if (TRACE_KEY !== undefined && event.key === TRACE_KEY) console.log(`${clock.now().toFixed(1)} p${proc.index} unlock ${event.key} ${event.holder.id.slice(0, 8)} token ${event.fencingToken} expired=${event.expired} resync=${event.resync}`);
      if (proc.locks.get(event.key)?.token === event.fencingToken) proc.locks.delete(event.key);
    });
    const decode = (v: unknown) => new TextDecoder().decode(v as Uint8Array);
    const count = (text: string, version: number) => {
      const n = (proc.applied.get(text) ?? 0) + 1;
      proc.applied.set(text, n);
      if (n > 1) violation(`p${proc.index}: the write "${text}" is applied ${n} times (as version ${proc.versions.get(text)}, now ${version})`);
      proc.versions.set(text, version);
    };
    map.on("change", (change) => {
      if (!change.resync && change.type !== "remove" && change.key.startsWith("j/") && proc.channel.isMaster()) {
        shownByMaster.set(change.key, new TextDecoder().decode(change.value as Uint8Array));
      }
      if (TRACE_KEY !== undefined && change.key === TRACE_KEY) {
        console.log(`${clock.now().toFixed(1)} p${proc.index} ${change.type} ${change.key} ${"version" in change ? change.version : ""} ${decode(change.value)} resync=${change.resync} epoch=${proc.channel.stateStats.epoch}`);
      }
      if (change.resync) {
        // A snapshot brought this replica to the coordinator's state: what it held before may have been
        // a history that was not agreed (a side of a partition, or updates of a coordinator that died
        // before they spread). Count afresh from the agreed state; members that followed the agreed
        // history all along keep counting across it.
        proc.applied.clear();
        proc.versions.clear();
        for (const key of map.keys()) {
          const entry = map.getEntry(key)!;
          const text = decode(entry.value);
          proc.applied.set(text, 1);
          proc.versions.set(text, entry.version);
        }
        return;
      }
      if (change.type === "remove") return;
      const text = decode(change.value);
      count(text, change.version);
      const [, writer, token] = text.split("|");
      const lock = proc.locks.get(change.key);
      if (lock !== undefined) {
        if (lock.holder !== writer) violation(`p${proc.index}: ${change.key} locked by ${lock.holder.slice(0, 8)} took a write from ${writer?.slice(0, 8)}`);
        else if (Number(token) !== 0 && Number(token) !== lock.token) violation(`p${proc.index}: ${change.key} took a write under token ${token} while the lock has ${lock.token}`);
      } else if (Number(token) !== 0) {
        violation(`p${proc.index}: ${change.key} took a write under token ${token} while unlocked`);
      }
    });
  };

  const sleep = (ms: number) => new Promise<void>((resolve) => clock.setTimer(ms, resolve));
  const value = (proc: Proc, token: number) => new TextEncoder().encode(`w|${proc.channel.id}|${token}|${valueSeq++}`);
  const expected = (proc: Proc, error: unknown, what: string) => {
    if (error instanceof BlazeError && EXPECTED.has(error.code)) {
      if (error.code === "STALE_TOKEN") refusedStale++;
      return;
    }
    if (proc.status === "running") violation(`p${proc.index} ${what}: ${String(error)}`);
  };

  const runWorkload = async (proc: Proc, lane: number) => {
    const random = rng.fork(`workload-${proc.index}-${lane}`);
    const map = proc.channel.map;
    let journalSeq = 0;
    while (workload && proc.status !== "crashed" && proc.status !== "left") {
      await sleep(5 + random.next() * 40);
      if (!workload || proc.status !== "running" || !proc.channel.ready) continue;
      const key = `k${Math.floor(random.next() * KEYS)}`;
      const pick = random.next();
      try {
        if (pick < 0.3) {
          await map.put(key, value(proc, 0), random.next() < 0.2 ? { timeToLiveMs: 200 + Math.floor(random.next() * 400) } : { removeOnExit: random.next() < 0.2 });
          acknowledged++;
        } else if (pick < 0.45) {
          const journalKey = `j/${proc.index}/${lane}/${journalSeq++}`;
          const v = value(proc, 0);
          await map.put(journalKey, v);
          journal.set(journalKey, new TextDecoder().decode(v));
          acknowledged++;
        } else if (pick < 0.55) {
          await map.remove(key);
          acknowledged++;
        } else if (pick < 0.65) {
          const version = map.getEntry(key)?.version ?? 0;
          await map.compareAndSet(key, version, value(proc, 0));
          acknowledged++;
        } else if (pick < 0.72) {
          await map.putAll([
            [key, value(proc, 0)],
            [`k${(Number(key.slice(1)) + 1) % KEYS}`, value(proc, 0)],
          ]);
          acknowledged++;
        } else {
          const lease = random.next() < 0.5 ? 150 + Math.floor(random.next() * 300) : 0;
          const handle: LockHandle | undefined =
            random.next() < 0.5 ? await map.tryLock(key, { leaseMs: lease }) : await map.lock(key, { leaseMs: lease, timeoutMs: 200 + Math.floor(random.next() * 300) });
          if (handle === undefined) continue;
          const holder = tokens.get(handle.fencingToken);
          if (holder !== undefined) violation(`p${proc.index}: fencing token ${handle.fencingToken} of "${key}" was handed out before (to ${holder})`);
          tokens.set(handle.fencingToken, `p${proc.index} for ${key}`);
          try {
            const writes = 1 + Math.floor(random.next() * 3);
            for (let i = 0; i < writes && proc.status === "running"; i++) {
              await map.put(key, value(proc, handle.fencingToken), { lock: handle });
              lockWrites++;
              await sleep(random.next() * 60);
            }
          } finally {
            // A release that fails (a failover) leaves the lock held: try again while the lock is ours.
            while (proc.status === "running" && !handle.released && !handle.lost.aborted) {
              await handle.release().catch((error: unknown) => expected(proc, error, "release"));
              if (!handle.released) await sleep(50);
            }
          }
        }
      } catch (error) {
        expected(proc, error, `operation on ${key}`);
      }
    }
  };

  const running = () => procs.filter((p) => p.status === "running");
  const crash = (proc: Proc) => {
    note(`crash p${proc.index}${proc.channel.isMaster() ? " (coordinator)" : ""}`);
    proc.status = "crashed";
    net.crash(proc.host);
    void proc.channel.stop();
  };

  /** Restarts a member in place: the same channel (same id) stopped, and started again as its next incarnation. */
  const restartInPlace = async (proc: Proc, downMs: number) => {
    note(`restart p${proc.index} in place${proc.channel.isMaster() ? " (coordinator)" : ""}`);
    proc.status = "restarting";
    restarts++;
    await proc.channel.stop();
    await step(downMs);
    await proc.channel.start();
    // A new incarnation: a new replica, brought up afresh (its event stream starts over).
    proc.locks.clear();
    proc.applied.clear();
    proc.versions.clear();
    proc.status = "running";
    proc.channel.addToGroup(GROUP, { timeoutMs: 3_600_000 }).catch((error: unknown) => {
      if (proc.status === "running") violation(`p${proc.index} failed to join again: ${String(error)}`);
    });
  };

  const step = async (ms: number) => {
    const end = clock.now() + ms;
    while (clock.now() < end) {
      clock.runFor(Math.min(5, end - clock.now()));
      await flush();
      const masters = procs.filter((p) => p.status === "running" && p.channel.isMaster());
      if (masters.length > 1) violation(`two masters at once: ${masters.map((p) => `p${p.index}`).join(", ")}`);
      if (violations.length > 0) throw failure(seed, violations, log);
    }
  };

  // --- the scenario ---
  /** Crashes `proc` and starts a new process under its id on its host. */
  const newProcess = async (proc: Proc, downMs: number): Promise<Proc> => {
    crash(proc);
    restarts++;
    await step(downMs);
    net.restart(proc.host);
    return spawn(proc.host, proc);
  };

  const members = kind === "quorum-change" ? 5 : kind === "mixed" ? 3 + Math.floor(rng.next() * 3) : 3 + (kind === "drop-together" ? Math.floor(rng.next() * 2) : 0);
  for (let i = 0; i < members; i++) {
    await spawn(`h${i}`);
    if (rng.next() < 0.7) await step(50 + rng.next() * 400);
  }
  await step(1_500);
  let crashes = 0;
  let coordinatorCrashes = 0;
  let partitions = 0;
  let jumps = 0;
  const hostOf = (p: Proc) => p.host;
  const partition = (a: readonly Proc[], b: readonly Proc[]) => {
    note(`partition ${a.map(hostOf).join(",")} | ${b.map(hostOf).join(",")}`);
    net.partition(a.map(hostOf), b.map(hostOf));
    partitioned = true;
    partitions++;
  };
  const shuffled = <T,>(list: readonly T[]) => {
    const copy = [...list];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [copy[i], copy[j]] = [copy[j]!, copy[i]!];
    }
    return copy;
  };
  const rounds = kind === "mixed" ? 2 + Math.floor(rng.next() * 3) : 2 + Math.floor(rng.next() * 2);
  for (let round = 0; round < rounds; round++) {
    const live = running();
    const master = live.find((p) => p.channel.isMaster());
    if (kind === "quorum-change" && live.length === 5) {
      // Two cut off; one of the three others misses the new term's sync (its coordinator cannot reach it
      // while the term starts); then the cut moves: the two that were alone with the one that missed.
      const order = shuffled(live);
      const [d, e, c] = [order[0]!, order[1]!, order[2]!];
      const rest = order.slice(3);
      partition([c, ...rest], [d, e]);
      const blockAt = 200 + rng.next() * 700;
      await step(blockAt);
      for (const other of rest) net.setLink(other.host, c.host, { loss: 1 });
      note(`p${c.index} hears nothing from ${rest.map((p) => `p${p.index}`).join(",")}`);
      await step(300 + rng.next() * 900);
      for (const other of rest) net.clearLink(other.host, c.host);
      partition(rest, [c, d, e]);
      await step(800 + rng.next() * 1_500);
      note("heal");
      net.heal();
    } else if (kind === "restarts") {
      const order = shuffled(live);
      const pick = rng.next();
      if (pick < 0.35) {
        // One after the other.
        await restartInPlace(order[0]!, 100 + rng.next() * 400);
        await step(200 + rng.next() * 800);
        await restartInPlace(order[1]!, 100 + rng.next() * 400);
      } else if (pick < 0.7) {
        // Two at once.
        note("two restart at once");
        await Promise.all([restartInPlace(order[0]!, 100 + rng.next() * 600), restartInPlace(order[1]!, 100 + rng.next() * 600)]);
      } else {
        // One cut off while another restarts, then healed.
        partition([order[0]!], order.slice(1));
        await step(600 + rng.next() * 600);
        await restartInPlace(order[1]!, 100 + rng.next() * 400);
        await step(300 + rng.next() * 600);
        note("heal");
        net.heal();
      }
    } else if (kind === "new-process" && live.length >= 3 && live.every((p) => p.channel.stateStats.epoch > 0 && p.channel.stateStats.epoch === live[0]!.channel.stateStats.epoch)) {
      // Only once every member took up one term: a new process forgets its earlier run's terms, and
      // with the processes that remembered a term all gone its members would be as at a first start
      // (term memory lives in the process; minimumMembers is all that guards a first start).
      const [x, y, z] = shuffled(live) as [Proc, Proc, Proc];
      if (rng.next() < 0.7) {
        // x cut off; y and z go on (a term of their own may begin); y's process starts again and joins x.
        partition([x], [y, z]);
        await step(300 + rng.next() * 1_200);
        const y2 = await newProcess(y, 50 + rng.next() * 300);
        partition([x, y2], [z]);
        await step(800 + rng.next() * 1_500);
        note("heal");
        net.heal();
      } else {
        await newProcess(y, 100 + rng.next() * 400);
      }
    } else if (kind === "drop-together" && live.length >= 3) {
      // The coordinator and a member that holds (or just got) a lock crash at the same moment.
      const holder = live.find((p) => p !== master && [...p.locks.values()].some((l) => l.holder === p.channel.id)) ?? live.find((p) => p !== master);
      for (const victim of [master, holder]) {
        if (victim === undefined) continue;
        crash(victim);
        crashes++;
      }
      if (master !== undefined) coordinatorCrashes++;
      await step(800 + rng.next() * 1_200);
      for (const victim of [master, holder]) {
        if (victim === undefined || rng.next() < 0.3) continue;
        net.restart(victim.host);
        await spawn(victim.host);
      }
    } else if (kind === "deposed" && master !== undefined && live.length >= 3) {
      partition([master], live.filter((p) => p !== master));
      await step(1_200 + rng.next() * 1_200);
      note("heal");
      net.heal();
    } else {
      const pick = rng.next();
      if (pick < 0.45 && live.length >= 3) {
        // Crash the coordinator (mostly) or another member; restart the host later.
        const victim = master !== undefined && rng.next() < 0.75 ? master : live[Math.floor(rng.next() * live.length)]!;
        if (victim === master) coordinatorCrashes++;
        crash(victim);
        crashes++;
        await step(300 + rng.next() * 1_200);
        if (rng.next() < 0.7) {
          net.restart(victim.host);
          await spawn(victim.host);
        }
      } else if (pick < 0.52 && live.length >= 3) {
        await restartInPlace(live[Math.floor(rng.next() * live.length)]!, 100 + rng.next() * 600);
      } else if (pick < 0.6 && live.length >= 3) {
        const leaver = live[Math.floor(rng.next() * live.length)]!;
        note(`leave p${leaver.index}`);
        leaver.status = "left";
        await leaver.channel.leave();
      } else if (pick < 0.8 && quorum && live.length >= 3) {
        const hosts = shuffled(live);
        const cut = 1 + Math.floor(rng.next() * (hosts.length - 1));
        partition(hosts.slice(0, cut), hosts.slice(cut));
        await step(800 + rng.next() * 1_500);
        note("heal");
        net.heal();
      } else {
        // Clock jumps: forward, less than the failure timeout minus a heartbeat (a larger one is a
        // silence the failure detector must act on).
        for (const proc of live) {
          if (rng.next() < 0.5) {
            const jump = 20 + rng.next() * 250;
            proc.clock.offset += jump;
            jumps++;
            note(`clock of p${proc.index} jumps ${jump.toFixed(0)} ms`);
          }
        }
      }
    }
    await step(500 + rng.next() * 1_500);
  }
  // Quiet down: heal, stop the workload, let views and terms settle.
  net.heal();
  net.setDefaultLink({ loss: 0, duplicate: 0, reorder: 0 });
  workload = false;
  await step(3_000);
  const live = running();
  // Everyone agrees on a view with a coordinator that serves (or, with quorum, refuses without a majority).
  let finalWrite: "ok" | "no-quorum" = "ok";
  const writer = live[0]!;
  const final = writer.channel.map.put("final", value(writer, 0), { timeoutMs: 5_000 });
  let outcome: unknown = "pending";
  final.then(
    () => (outcome = "ok"),
    (error: unknown) => (outcome = error),
  );
  await step(5_100);
  if (outcome !== "ok") {
    // Every member back and the network whole: only a mixed run may have lost its quorum for good
    // (members crashed for good are new members when they come back).
    // So may a run whose members' new processes forgot terms the others cannot do without.
    if (quorum && (kind === "mixed" || kind === "new-process") && outcome instanceof BlazeError && outcome.code === "NO_QUORUM") finalWrite = "no-quorum";
    else violation(`the final write failed after the network healed: ${String(outcome)}`);
  }
  await step(500);
  if (finalWrite === "ok") {
    // Replicas converge.
    const digests = live.map((p) => ({ p, digest: digestOf(p.channel) }));
    for (const { p, digest } of digests) {
      if (!p.channel.ready) violation(`p${p.index} is not ready at the end`);
      if (digest !== digests[0]!.digest) violation(`replicas differ: p${digests[0]!.p.index} ${digests[0]!.digest.slice(0, 400)} vs p${p.index} ${digest.slice(0, 400)}`);
    }
    // Every lock was released, withdrawn, or freed with its holder.
    for (const { p } of digests) for (const lock of p.channel.map.locks()) violation(`p${p.index}: "${lock.key}" is still locked by ${lock.holder.id.slice(0, 8)} (token ${lock.fencingToken})`);
    // What a master showed its application was committed: it is there (or was written over since).
    if (quorum) {
      const map = writer.channel.map;
      for (const [key, text] of shownByMaster) {
        const stored = map.get(key);
        if (stored === undefined || new TextDecoder().decode(stored as Uint8Array) !== text) violation(`${key} = ${text}, shown by a master to its application, is lost`);
      }
    }
    for (const { p } of digests) {
      const remembered = p.channel.stateStats.appliedRequesters;
      if (remembered > live.length + DEPARTED_REMEMBERED) violation(`p${p.index} remembers the requests of ${remembered} members`);
    }
    // Acknowledged writes survive (a partition without quorum may lose one side's writes by design).
    if (quorum || !partitioned) {
      const map = writer.channel.map;
      for (const [key, text] of journal) {
        const stored = map.get(key);
        if (stored === undefined || new TextDecoder().decode(stored as Uint8Array) !== text) violation(`acknowledged ${key} = ${text} is lost`);
      }
    }
  }
  if (violations.length > 0) throw failure(seed, violations, log);
  const stats = procs.map((p) => p.channel.stateStats);
  for (const proc of running()) await proc.channel.stop();
  return {
    seed,
    kind,
    quorum,
    loss,
    members,
    crashes,
    coordinatorCrashes,
    partitions,
    jumps,
    acknowledged,
    journal: journal.size,
    lockWrites,
    refusedStale,
    retried: stats.reduce((sum, s) => sum + s.requestsRetried, 0),
    deduplicated: stats.reduce((sum, s) => sum + s.requestsDeduplicated, 0),
    pulls: stats.reduce((sum, s) => sum + s.pulls, 0),
    restarts,
    tokens: tokens.size,
    cancels: stats.reduce((sum, s) => sum + s.cancelsSent, 0),
    finalWrite,
  };
}

function digestOf(channel: ClusterChannel): string {
  const map = channel.map;
  const parts: string[] = [];
  for (const key of map.keys().sort()) {
    const entry = map.getEntry(key)!;
    parts.push(`${key}=${new TextDecoder().decode(entry.value as Uint8Array)}@${entry.version}`);
  }
  for (const lock of map.locks().sort((a, b) => (a.key < b.key ? -1 : 1))) parts.push(`lock ${lock.key} ${lock.holder.id.slice(0, 8)} ${lock.fencingToken}`);
  return parts.join(";");
}

function failure(seed: number, violations: string[], log: string[]): Error {
  return new Error(`seed ${seed}:\n${violations.slice(0, 10).join("\n")}\n--- story ---\n${log.slice(-60).join("\n")}`);
}
