import { GroupChannel } from "../../src/group/group-channel.ts";
import type { GroupChannelOptions } from "../../src/group/options.ts";
import { type CoordinatorSelector, defaultCoordinatorSelector, type Member, type View } from "../../src/group/view.ts";
import { SeededRandom } from "../../src/transport/seeded-random.ts";
import { type LinkConditions, SimulatedNetwork } from "../../src/transport/simulated-network.ts";
import { flush } from "./sim-helpers.ts";

/**
 * Seeded simulations of group membership and group messaging on the simulated network.
 *
 * {@link GroupSim} is the test bed: processes (one GroupChannel each) on virtual hosts, started,
 * crashed, restarted, leaving, partitioned, while every view change is watched for invariants that
 * must hold at every moment (view counters grow; only a crashed, departed or partitioned-off member is
 * ever removed). {@link runGroupScenario} draws one random scenario from a seed and checks the
 * invariants that need the whole run: agreement after a quiet period, crash detection and partition
 * merge within their bounds, queue messages processed exactly once, point-to-point messages in order
 * and exactly once.
 */

/** The timing every simulated member runs with (fast, so that a run takes a few virtual seconds). */
export const TIMING = { heartbeatIntervalMs: 100, failureTimeoutMs: 500, verifyTimeoutMs: 150, discoveryTimeoutMs: 300 } as const;

/**
 * Crash detection: a crashed member is out of every survivor's view within
 * failureTimeoutMs + verifyTimeoutMs + CRASH_SLACK_MS of the crash (650 + 657 ms here).
 *
 * Where the slack goes:
 * - suspicion and the end of verification each come 1 ms past their timeout (checks wake then): 2 ms;
 * - the coordinator gathers changes for 5 ms before it installs a view;
 * - one more verifyTimeoutMs when the coordinator is newer than the crash (a member that joined
 *   afterwards, heavier, or the survivor that took over from a coordinator that died too): it has not
 *   watched the dead member long enough, so a member that has reports it and the coordinator verifies
 *   it itself (Suspect, in membership.ts);
 * - delivery of the view: a datagram without loss; with loss, the view goes again to members that do
 *   not acknowledge it 100 ms later and every heartbeat after, so each 100 ms covers one more lost
 *   copy (or lost report). Five heartbeats: at 20 % loss, five copies in a row are lost once in 3,000.
 * Without loss and with the coordinator watching from before the crash: F + V + 1 ms + 5 ms + a
 * datagram, ≤ 657 ms (see the unit test in group.test.ts).
 */
export const CRASH_SLACK_MS = TIMING.verifyTimeoutMs + 2 + 5 + 5 * TIMING.heartbeatIntervalMs;
export const CRASH_BOUND_MS = TIMING.failureTimeoutMs + TIMING.verifyTimeoutMs + CRASH_SLACK_MS;

/**
 * Partition merge: after `heal()`, the members that lived through the partition are in one view
 * within MERGE_BOUND_MS. A coordinator repeats its view every heartbeat; the first repeat the other
 * side's coordinator hears starts the merge (or, when one side had not yet removed the other, the
 * left-out members join again, retrying every 200 ms), and the merged view then reaches everyone —
 * each step one heartbeat more per lost copy. Measured over seeds 1–4000: median 70 ms, at most 521 ms.
 */
export const MERGE_BOUND_MS = 12 * TIMING.heartbeatIntervalMs;

export const GROUP = "sim";

/** One process: a GroupChannel on a host, from its start until it leaves or crashes. */
export interface Proc {
  /** Counts processes in start order (a restart is a new process). */
  readonly index: number;
  readonly host: string;
  readonly channel: GroupChannel;
  /** The member id (fixed for the life of the process). */
  readonly id: string;
  status: "running" | "left" | "crashed";
  readonly startedAt: number;
  endedAt: number | undefined;
  /** Every view installed here, with the virtual time. */
  readonly views: Array<{ readonly at: number; readonly view: View }>;
}

interface PartitionRecord {
  readonly sides: ReadonlyArray<ReadonlySet<string>>;
  readonly from: number;
  to: number | undefined;
}

export interface GroupSimOptions {
  readonly seed: number;
  readonly link?: Partial<LinkConditions>;
  /** Given to every member, and used to check the coordinator each view names. */
  readonly coordinatorSelector?: CoordinatorSelector;
}

/** A removal of a live member is explained by a partition that separated the two this recently. */
const PARTITION_EXCUSE_MS = TIMING.failureTimeoutMs + TIMING.verifyTimeoutMs + CRASH_SLACK_MS;

/**
 * The test bed: a simulated network, the processes on it and what they saw. Invariants that must hold
 * at every moment are checked as views are installed; a breach is recorded and thrown by the next
 * `run`, so the failure names the seed's time and the members.
 */
export class GroupSim {
  readonly net: SimulatedNetwork;
  readonly procs: Proc[] = [];
  readonly violations: string[] = [];
  /** What happened, one line per event (membership changes, views installed), for a failing seed's story. */
  readonly log: string[] = [];
  readonly #partitions: PartitionRecord[] = [];
  readonly #byId = new Map<string, Proc>();
  readonly #spawnListeners: Array<(proc: Proc) => void> = [];
  readonly #selector: CoordinatorSelector | undefined;
  #nextIndex = 0;

  constructor(options: GroupSimOptions) {
    this.net = new SimulatedNetwork({ seed: options.seed, defaultLink: options.link ?? {} });
    this.#selector = options.coordinatorSelector;
  }

  get now(): number {
    return this.net.clock.now();
  }

  running(): Proc[] {
    return this.procs.filter((p) => p.status === "running");
  }

  proc(id: string): Proc | undefined {
    return this.#byId.get(id);
  }

  /** Calls `listener` with every process started from now on, before it starts. */
  onSpawn(listener: (proc: Proc) => void): void {
    this.#spawnListeners.push(listener);
  }

  /** Starts a process on `host` and has it join the group (without waiting for the join). */
  async spawn(host: string, options: Partial<GroupChannelOptions> = {}): Promise<Proc> {
    const index = this.#nextIndex++;
    const channel = new GroupChannel({
      name: `p${index}`,
      transport: this.net.transportFactory(host),
      clock: this.net.clock,
      random: this.net.random.fork(`process-${index}`),
      incarnation: index + 1,
      groups: [GROUP],
      ...TIMING,
      ...(this.#selector === undefined ? {} : { coordinatorSelector: this.#selector }),
      ...options,
    });
    const proc: Proc = { index, host, channel, id: channel.id, status: "running", startedAt: this.now, endedAt: undefined, views: [] };
    this.note(`start p${index}@${host} ${channel.id.slice(0, 8)}${options.weight === undefined ? "" : ` weight ${options.weight}`}`);
    this.procs.push(proc);
    this.#byId.set(proc.id, proc);
    channel.on("viewChange", (event) => this.#onViewChange(proc, event.view, event.left));
    channel.on("error", ({ error, stage }) => {
      if (proc.status === "running") this.#violation(`${this.#name(proc)} reported an error (${stage}): ${error.message}`);
    });
    for (const listener of this.#spawnListeners) listener(proc);
    await channel.start();
    // A join under churn may take long; nothing waits on it, it only must not fail.
    channel.addToGroup(GROUP, { timeoutMs: 3_600_000 }).catch((error: unknown) => {
      if (proc.status === "running") this.#violation(`${this.#name(proc)} failed to join: ${String(error)}`);
    });
    return proc;
  }

  /** Crashes a process's host: it goes silent at once. Its code is stopped too, as a dead process's would be. */
  crash(proc: Proc): void {
    this.note(`crash p${proc.index}@${proc.host}`);
    proc.status = "crashed";
    proc.endedAt = this.now;
    this.net.crash(proc.host);
    // The transports are dead, so stopping sends nothing: it only ends the dead process's timers.
    void proc.channel.stop();
  }

  /** Restarts a crashed host with a new process (a new member id and incarnation). */
  async restart(host: string, options: Partial<GroupChannelOptions> = {}): Promise<Proc> {
    this.net.restart(host);
    return this.spawn(host, options);
  }

  /** A graceful leave. */
  async leave(proc: Proc): Promise<void> {
    this.note(`leave p${proc.index}@${proc.host}`);
    proc.status = "left";
    proc.endedAt = this.now;
    await proc.channel.leave();
  }

  partition(sides: ReadonlyArray<readonly string[]>): void {
    this.note(`partition ${sides.map((s) => s.join(",")).join(" | ")}`);
    this.net.partition(...sides);
    this.#partitions.push({ sides: sides.map((s) => new Set(s)), from: this.now, to: undefined });
  }

  heal(): void {
    this.note("heal");
    this.net.heal();
    for (const p of this.#partitions) p.to ??= this.now;
  }

  /** Whether a partition separated the two hosts at any time since `since`. */
  separatedSince(a: string, b: string, since: number): boolean {
    return this.#partitions.some(
      (p) => (p.to === undefined || p.to >= since) && p.sides.some((s) => s.has(a) && !s.has(b)) && p.sides.some((s) => s.has(b) && !s.has(a)),
    );
  }

  /** Whether a partition separated the two hosts at any time. */
  everSeparated(a: string, b: string): boolean {
    return this.separatedSince(a, b, -Infinity);
  }

  /**
   * Runs virtual time forward in small steps, letting promise continuations run between steps (the
   * virtual clock runs none itself), and throws the first invariant breach.
   */
  async run(ms: number, stepMs = 10): Promise<void> {
    const end = this.now + ms;
    while (this.now < end) {
      this.net.clock.runFor(Math.min(stepMs, end - this.now));
      await flush();
      this.check();
    }
  }

  /** Runs until `predicate` holds (checked every step); returns the virtual ms it took. */
  async runUntil(predicate: () => boolean, maxMs: number, what: string, stepMs = 5): Promise<number> {
    const start = this.now;
    while (!predicate()) {
      if (this.now - start >= maxMs) throw new Error(`${what}: not reached within ${maxMs} ms (at ${this.now} ms)`);
      this.net.clock.runFor(stepMs);
      await flush();
      this.check();
    }
    return this.now - start;
  }

  check(): void {
    if (this.violations.length > 0) throw new Error(this.violations.join("\n"));
  }

  /** Whether every running process has installed the same view, of exactly the running processes. */
  agreed(): boolean {
    return this.disagreement() === undefined;
  }

  /** What keeps the running processes from agreeing, or undefined when they agree. */
  disagreement(): string | undefined {
    const running = this.running();
    if (running.length === 0) return undefined;
    const first = running[0]!.channel.getView(GROUP);
    if (first === undefined) return `${this.#name(running[0]!)} has no view`;
    for (const proc of running) {
      const view = proc.channel.getView(GROUP);
      if (view === undefined) return `${this.#name(proc)} has no view`;
      if (view.id.installer !== first.id.installer || view.id.counter !== first.id.counter) {
        return `views differ: ${this.#name(running[0]!)} has ${this.describe(first)}, ${this.#name(proc)} has ${this.describe(view)}`;
      }
      // Same view id must mean the same view: members in the same order, the same coordinator.
      if (view.members.map((m) => m.id).join() !== first.members.map((m) => m.id).join() || view.coordinator.id !== first.coordinator.id) {
        return `view ${view.id.counter} differs in content: ${this.describe(first)} vs ${this.describe(view)}`;
      }
    }
    const ids = new Set(first.members.map((m) => m.id));
    const missing = running.filter((p) => !ids.has(p.id));
    const extra = first.members.filter((m) => this.#byId.get(m.id)?.status !== "running");
    if (missing.length > 0 || extra.length > 0) {
      return `the view ${this.describe(first)} is not the live members: missing ${missing.map((p) => this.#name(p)).join(",") || "none"}, extra ${extra.map((m) => this.#memberName(m)).join(",") || "none"}`;
    }
    return undefined;
  }

  describe(view: View | undefined): string {
    if (view === undefined) return "(none)";
    return `#${view.id.counter}@${this.#memberName({ id: view.id.installer })} [${view.members.map((m) => this.#memberName(m)).join(" ")}] coord ${this.#memberName(view.coordinator)}`;
  }

  /** Releases everything (the channels' timers and sockets). */
  async shutDown(): Promise<void> {
    for (const proc of this.procs) {
      if (proc.status === "running") proc.status = "left";
      await proc.channel.shutDown().catch(() => undefined);
    }
  }

  #onViewChange(proc: Proc, view: View, left: readonly Member[]): void {
    // A crashed process's last moments are no one's business.
    if (proc.status === "crashed") return;
    const previous = proc.views.at(-1)?.view;
    proc.views.push({ at: this.now, view });
    this.note(`p${proc.index} installs ${this.describe(view)}`);
    if (previous !== undefined && view.id.counter <= previous.id.counter) {
      this.#violation(`${this.#name(proc)} installed ${this.describe(view)} after ${this.describe(previous)}: view counters must grow`);
    }
    if (!view.members.some((m) => m.id === proc.id)) this.#violation(`${this.#name(proc)} installed ${this.describe(view)} without itself`);
    // Every member runs the same selector over the same members: the view names its choice.
    if ((this.#selector ?? defaultCoordinatorSelector)(view.members).id !== view.coordinator.id) {
      this.#violation(`${this.#name(proc)} installed ${this.describe(view)}, whose coordinator is not the selector's choice`);
    }
    for (const member of left) {
      const gone = this.#byId.get(member.id);
      if (gone === undefined) {
        this.#violation(`${this.#name(proc)} removed ${member.id.slice(0, 8)}, which is no process of this run`);
        continue;
      }
      if (gone.status !== "running") continue;
      // An earlier incarnation of a process restarted in place (same id) is gone, whatever the id says.
      if (member.incarnation < gone.channel.incarnation) continue;
      // A live member was removed: only a recent partition between it and this member, or between it
      // and the member that installed the view (a coordinator's decision is everyone's), explains it.
      const since = this.now - PARTITION_EXCUSE_MS;
      const installer = this.#byId.get(view.id.installer);
      if (!this.separatedSince(proc.host, gone.host, since) && (installer === undefined || !this.separatedSince(installer.host, gone.host, since))) {
        this.#violation(`${this.#name(proc)} removed the live ${this.#name(gone)} (view ${this.describe(view)}): a false removal`);
      }
    }
  }

  note(text: string): void {
    this.log.push(`${this.now.toFixed(1)} ${text}`);
  }

  #violation(text: string): void {
    this.violations.push(`at ${this.now.toFixed(1)} ms: ${text}`);
  }

  #name(proc: Proc): string {
    return `p${proc.index}@${proc.host}`;
  }

  #memberName(member: { id: string }): string {
    const proc = this.#byId.get(member.id);
    return proc === undefined ? member.id.slice(0, 8) : `p${proc.index}`;
  }
}

// ------------------------------------------------------------------------------------------------
// The random scenario

export type ScenarioKind = "calm" | "crash" | "partition";

export interface GroupScenarioResult {
  readonly seed: number;
  readonly kind: ScenarioKind;
  readonly hosts: number;
  readonly loss: number;
  readonly processes: number;
  readonly coldStart: number;
  readonly crashes: number;
  /** Crashes whose detection time was checked against the bound (isolated from partitions and later crashes). */
  readonly crashesChecked: number;
  readonly leaves: number;
  readonly restarts: number;
  readonly partitions: number;
  readonly mergesChecked: number;
  /** The longest time, over checked crashes, until every survivor's view left the crashed member out. */
  readonly maxCrashDetectionMs: number;
  /** The longest time, over checked heals, until the sides were in one view. */
  readonly maxMergeMs: number;
  readonly pointToPoint: number;
  readonly queueMessages: number;
  readonly queueConsumerCrashed: boolean;
  readonly virtualMs: number;
}

interface CrashRecord {
  readonly proc: Proc;
  readonly at: number;
}

interface HealRecord {
  readonly at: number;
  /** Running members in a view at the heal: they must end in one view. */
  readonly members: readonly Proc[];
}

const P2P_INBOX = "p2p";
/** The most time the last point-to-point messages get to arrive once the traffic stops. */
const P2P_DRAIN_MS = 10_000;
const QUEUE = "work";

/**
 * One seeded scenario: 3–7 hosts; loss 0–20 %, duplication, reordering, delay; members starting
 * together (a concurrent cold start) and at other times; then episodes of graceful leaves, joins,
 * crashes (one or two at once), restarts as new processes and partitions healed later, with
 * point-to-point traffic between members throughout; a quiet period; then a queue workload with a
 * consumer that may crash mid-run. Throws on the first invariant that does not hold.
 *
 * Scenario kinds: "calm" has no crash and no partition (so no live member may ever be removed),
 * "crash" has crashes and restarts, "partition" has partitions (and sometimes a crash during one).
 */
export async function runGroupScenario(seed: number): Promise<GroupScenarioResult> {
  const rng = new SeededRandom(seed).fork("group-scenario");
  const kindDraw = rng.next();
  const kind: ScenarioKind = kindDraw < 0.3 ? "calm" : kindDraw < 0.65 ? "crash" : "partition";
  const loss = rng.next() < 0.2 ? 0 : rng.next() * 0.2;
  const sim = new GroupSim({
    seed,
    link: {
      loss,
      duplicate: rng.next() * 0.05,
      reorder: rng.next() * 0.1,
      delayMs: { min: 0.05, max: 0.05 + rng.next() * 3 },
    },
  });
  try {
    return await play(seed, kind, loss, rng, sim);
  } catch (error) {
    // The run's story (who started, crashed, left, which views were installed) makes a failing seed readable.
    const story = process.env.BLAZE_GROUP_LOG ? `\n${sim.log.join("\n")}` : " (BLAZE_GROUP_LOG=1 prints the run's story)";
    throw new Error(`${error instanceof Error ? error.message : String(error)}${story}`, { cause: error });
  } finally {
    await sim.shutDown();
  }
}

async function play(seed: number, kind: ScenarioKind, loss: number, rng: SeededRandom, sim: GroupSim): Promise<GroupScenarioResult> {
  const hostCount = 3 + rng.nextInt(5);
  const hosts = Array.from({ length: hostCount }, (_, i) => `h${i}`);
  for (const host of hosts) sim.net.createHost(host);
  const weighted = rng.next() < 0.3;
  const options = (): Partial<GroupChannelOptions> => (weighted ? { weight: rng.nextInt(3) } : {});

  const crashes: CrashRecord[] = [];
  const heals: HealRecord[] = [];
  const partitionTimes: Array<{ from: number; to: number }> = [];
  let leaves = 0;
  let restarts = 0;
  let processes = 0;
  // Hosts without a running process; a crashed one must be restarted before it can host another.
  const hostState = new Map<string, "free" | "busy" | "crashed">(hosts.map((h) => [h, "free"]));
  const spawn = async (host: string): Promise<Proc> => {
    processes++;
    const wasCrashed = hostState.get(host) === "crashed";
    hostState.set(host, "busy");
    if (wasCrashed) {
      restarts++;
      return sim.restart(host, options());
    }
    return sim.spawn(host, options());
  };
  const hostsIn = (state: "free" | "busy" | "crashed") => hosts.filter((h) => hostState.get(h) === state);
  const crash = (proc: Proc) => {
    sim.crash(proc);
    hostState.set(proc.host, "crashed");
    crashes.push({ proc, at: sim.now });
  };
  const leave = async (proc: Proc) => {
    hostState.set(proc.host, "free");
    leaves++;
    await sim.leave(proc);
  };
  const pick = <T>(list: readonly T[]): T => list[rng.nextInt(list.length)]!;
  // Picks a running process, the coordinator a third of the time (its departure is the harder case).
  const pickVictim = (): Proc => {
    const running = sim.running();
    const coordinatorId = running[0]!.channel.getView(GROUP)?.coordinator.id;
    const coordinator = running.find((p) => p.id === coordinatorId);
    return coordinator !== undefined && rng.next() < 0.33 ? coordinator : pick(running);
  };

  const p2p = new PointToPointTraffic(sim, rng.fork("p2p"));

  // Cold start: several members at once (half the time at the very same instant), the rest later.
  const coldStart = 2 + rng.nextInt(hostCount - 1);
  const together = rng.next() < 0.5;
  const lateStarts: Array<{ host: string; at: number }> = [];
  for (let i = 0; i < hostCount; i++) {
    if (i < coldStart && together) await spawn(hosts[i]!);
    else lateStarts.push({ host: hosts[i]!, at: i < coldStart ? rng.nextInt(2 * TIMING.discoveryTimeoutMs) : rng.nextInt(3_000) });
  }
  lateStarts.sort((a, b) => a.at - b.at);

  // The churn episodes, one after another; gaps are mostly long enough for each to settle, sometimes short so that they overlap.
  const episodes = 2 + rng.nextInt(4);
  let nextEpisode = 400 + rng.nextInt(1_500);
  const advanceTo = async (time: number) => {
    while (lateStarts.length > 0 && lateStarts[0]!.at <= time) {
      const start = lateStarts.shift()!;
      await sim.run(Math.max(0, start.at - sim.now));
      if (hostState.get(start.host) === "free") await spawn(start.host);
    }
    await sim.run(Math.max(0, time - sim.now));
  };
  const settle = (long: number) => (rng.next() < 0.7 ? long + rng.nextInt(500) : rng.nextInt(300));

  for (let e = 0; e < episodes; e++) {
    await advanceTo(nextEpisode);
    const running = sim.running();
    const draw = rng.next();
    let gap = settle(200);
    if (kind === "crash" && draw < 0.45 && running.length > 2) {
      const victim = pickVictim();
      crash(victim);
      // Sometimes two at once (never the last two).
      const others = sim.running();
      if (others.length > 2 && rng.next() < 0.3) crash(pick(others));
      gap = settle(CRASH_BOUND_MS + 100);
    } else if (kind === "crash" && draw < 0.65 && hostsIn("crashed").length > 0) {
      await spawn(pick(hostsIn("crashed")));
    } else if (kind === "partition" && draw < 0.5) {
      // Two sides, each with a running member; hosts without a process fall on a side too.
      const shuffled = shuffle(hosts, rng);
      const runningHosts = new Set(running.map((p) => p.host));
      let cut = 1 + rng.nextInt(hostCount - 1);
      const sideA = shuffled.slice(0, cut);
      const sideB = shuffled.slice(cut);
      if (!sideA.some((h) => runningHosts.has(h)) || !sideB.some((h) => runningHosts.has(h))) {
        cut = 0;
      }
      if (cut > 0) {
        sim.partition([sideA, sideB]);
        const from = sim.now;
        const duration = 200 + rng.nextInt(2_500);
        if (rng.next() < 0.2 && running.length > 2) {
          await advanceTo(sim.now + rng.nextInt(duration));
          crash(pick(sim.running()));
        }
        await advanceTo(from + duration);
        sim.heal();
        partitionTimes.push({ from, to: sim.now });
        heals.push({ at: sim.now, members: sim.running().filter((p) => p.channel.getView(GROUP) !== undefined) });
        gap = settle(MERGE_BOUND_MS + 100);
      }
    } else if (draw < 0.8 && running.length > 2) {
      await leave(pickVictim());
    } else if (hostsIn("free").length > 0) {
      // Joins: one, or several at once.
      const free = shuffle(hostsIn("free"), rng);
      const count = 1 + rng.nextInt(Math.min(free.length, 3));
      for (const host of free.slice(0, count)) await spawn(host);
    } else if (running.length > 2) {
      await leave(pickVictim());
    }
    nextEpisode = sim.now + gap;
  }
  await advanceTo(nextEpisode);
  for (const start of lateStarts.splice(0)) if (hostState.get(start.host) === "free") await spawn(start.host);

  // Quiet period: everything settles; then every live member has the same view of exactly the live members.
  await sim.run(QUIET_MS);
  const disagreement = sim.disagreement();
  if (disagreement !== undefined) throw new Error(`after the quiet period: ${disagreement}`);
  // The last messages may still be on their way: a lost tail waits for the sender's retransmission
  // timeout, which backs off to 1 s, so a tail lost several times takes seconds.
  p2p.stop();
  await sim.runUntil(() => p2p.complete(), P2P_DRAIN_MS, "the point-to-point messages to arrive").catch(() => undefined);
  p2p.check();

  // The queue workload, on the settled group.
  const queue = await runQueueWorkload(sim, rng.fork("queue"), crashes);
  if (queue.crashed !== undefined) hostState.set(queue.crashed.host, "crashed");
  await sim.run(QUIET_MS);
  const afterQueue = sim.disagreement();
  if (afterQueue !== undefined) throw new Error(`after the queue workload: ${afterQueue}`);

  const crashDetection = checkCrashDetection(sim, crashes, partitionTimes);
  const merge = checkMerges(sim, heals, crashes, partitionTimes);
  return {
    seed,
    kind,
    hosts: hostCount,
    loss,
    processes,
    coldStart: together ? coldStart : 0,
    crashes: crashes.length,
    crashesChecked: crashDetection.checked,
    leaves,
    restarts,
    partitions: partitionTimes.length,
    mergesChecked: merge.checked,
    maxCrashDetectionMs: crashDetection.max,
    maxMergeMs: merge.max,
    pointToPoint: p2p.sent,
    queueMessages: queue.messages,
    queueConsumerCrashed: queue.crashed !== undefined,
    virtualMs: sim.now,
  };
}

/** Long enough for the slowest thing a quiet group still does: detect a crash and merge after a heal. */
const QUIET_MS = CRASH_BOUND_MS + MERGE_BOUND_MS + 1_000;

/** The view `proc` had at virtual time `at` (the last one installed by then). */
function viewAt(proc: Proc, at: number): View | undefined {
  let view: View | undefined;
  for (const entry of proc.views) {
    if (entry.at > at) break;
    view = entry.view;
  }
  return view;
}

/**
 * Invariant 2: every crash is out of every survivor's view within CRASH_BOUND_MS. Checked for crashes
 * with no partition around them and no later crash within the bound (a later crash of the member that
 * would install the next view delays it, as it must); returns the longest detection time measured.
 */
function checkCrashDetection(sim: GroupSim, crashes: readonly CrashRecord[], partitions: ReadonlyArray<{ from: number; to: number }>): { checked: number; max: number } {
  let checked = 0;
  let max = 0;
  for (const crash of crashes) {
    const deadline = crash.at + CRASH_BOUND_MS;
    const nearPartition = partitions.some((p) => p.from <= deadline && p.to >= crash.at - CRASH_BOUND_MS);
    const laterCrash = crashes.some((c) => c.at > crash.at && c.at <= deadline);
    if (nearPartition || laterCrash) continue;
    checked++;
    for (const survivor of sim.procs) {
      // Survivors: running at the deadline, started before it.
      if (survivor === crash.proc || survivor.startedAt > deadline || (survivor.endedAt !== undefined && survivor.endedAt <= deadline)) continue;
      const has = (view: View | undefined) => view?.members.some((m) => m.id === crash.proc.id) ?? false;
      if (has(viewAt(survivor, deadline))) {
        throw new Error(`p${crash.proc.index} crashed at ${crash.at} ms and is still in p${survivor.index}'s view ${CRASH_BOUND_MS} ms later: ${sim.describe(viewAt(survivor, deadline))}`);
      }
      // When it went: the start of the last stretch before the deadline without the crashed member.
      let gone = has(viewAt(survivor, crash.at)) ? undefined : crash.at;
      for (const entry of survivor.views) {
        if (entry.at <= crash.at || entry.at > deadline) continue;
        if (has(entry.view)) gone = undefined;
        else gone ??= entry.at;
      }
      gone ??= deadline;
      max = Math.max(max, gone - crash.at);
    }
  }
  return { checked, max };
}

/**
 * Invariant 4: after a heal, the members that lived through the partition are in one view within
 * MERGE_BOUND_MS. Checked for heals with no crash around them and no new partition within the bound;
 * returns the longest merge time measured.
 */
function checkMerges(sim: GroupSim, heals: readonly HealRecord[], crashes: readonly CrashRecord[], partitions: ReadonlyArray<{ from: number; to: number }>): { checked: number; max: number } {
  let checked = 0;
  let max = 0;
  for (const heal of heals) {
    const deadline = heal.at + MERGE_BOUND_MS;
    if (crashes.some((c) => c.at >= heal.at - CRASH_BOUND_MS && c.at <= deadline)) continue;
    if (partitions.some((p) => p.from > heal.at && p.from <= deadline)) continue;
    const members = heal.members.filter((p) => p.endedAt === undefined || p.endedAt > deadline);
    if (members.length < 2) continue;
    checked++;
    const oneView = (at: number) => {
      const views = members.map((p) => viewAt(p, at));
      const first = views[0];
      return (
        first !== undefined &&
        views.every((v) => v !== undefined && v.id.installer === first.id.installer && v.id.counter === first.id.counter) &&
        members.every((p) => first.members.some((m) => m.id === p.id))
      );
    };
    // When they got there: the first moment after the heal when they were in one view.
    const times = [heal.at, ...members.flatMap((p) => p.views.map((e) => e.at).filter((t) => t > heal.at && t <= deadline))].sort((a, b) => a - b);
    const merged = times.find(oneView);
    if (merged === undefined) {
      throw new Error(
        `${MERGE_BOUND_MS} ms after the heal at ${heal.at} ms the members were not yet in one view: ${members.map((p) => `p${p.index} ${sim.describe(viewAt(p, deadline))}`).join("; ")}`,
      );
    }
    max = Math.max(max, merged - heal.at);
  }
  return { checked, max };
}

/**
 * Point-to-point traffic between random pairs of members, each message numbered per pair; invariant 6:
 * what arrives, arrives in order and once; between two members alive at the end and never partitioned
 * apart, everything arrives.
 */
class PointToPointTraffic {
  readonly #sim: GroupSim;
  readonly #rng: SeededRandom;
  /** Per "sender>receiver" (process indexes): numbers sent, numbers received in order of arrival. */
  readonly #sent = new Map<string, number>();
  readonly #received = new Map<string, number[]>();
  readonly #failed = new Map<string, string>();
  #timer: { cancel(): void } | undefined;
  sent = 0;

  constructor(sim: GroupSim, rng: SeededRandom) {
    this.#sim = sim;
    this.#rng = rng;
    for (const proc of sim.procs) this.#listen(proc);
    sim.onSpawn((proc) => this.#listen(proc));
    this.#schedule();
  }

  stop(): void {
    this.#timer?.cancel();
  }

  #schedule(): void {
    this.#timer = this.#sim.net.clock.setTimer(20 + this.#rng.nextInt(40), () => {
      this.#burst();
      this.#schedule();
    });
  }

  #listen(proc: Proc): void {
    proc.channel.onInbox(P2P_INBOX, (message) => {
      const view = new DataView(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength);
      const from = view.getUint32(0);
      const number = view.getUint32(4);
      const sender = this.#sim.proc(message.senderId);
      if (sender?.index !== from) throw new Error(`p${proc.index} got a message of p${from} from ${message.senderId.slice(0, 8)}`);
      const key = `${from}>${proc.index}`;
      let list = this.#received.get(key);
      if (list === undefined) this.#received.set(key, (list = []));
      list.push(number);
    });
  }

  // A few messages from a random member to a random member of its view.
  #burst(): void {
    const running = this.#sim.running();
    if (running.length === 0) return;
    const from = running[this.#rng.nextInt(running.length)];
    const view = from?.channel.getView(GROUP);
    if (from === undefined || view === undefined || view.members.length < 2) return;
    const others = view.members.filter((m) => m.id !== from.id);
    const to = others[this.#rng.nextInt(others.length)]!;
    const target = this.#sim.proc(to.id);
    if (target === undefined) return;
    const key = `${from.index}>${target.index}`;
    const count = 1 + this.#rng.nextInt(3);
    for (let i = 0; i < count; i++) {
      const number = this.#sent.get(key) ?? 0;
      this.#sent.set(key, number + 1);
      this.sent++;
      const payload = new Uint8Array(8 + this.#rng.nextInt(200));
      const data = new DataView(payload.buffer);
      data.setUint32(0, from.index);
      data.setUint32(4, number);
      from.channel.send(to, payload, { inbox: P2P_INBOX }).catch((error: unknown) => {
        if (!this.#failed.has(key)) this.#failed.set(key, String(error));
      });
    }
  }

  /** Whether every message between two members that must get all of them has arrived. */
  complete(): boolean {
    try {
      this.check();
      return true;
    } catch {
      return false;
    }
  }

  check(): void {
    const byIndex = new Map(this.#sim.procs.map((p) => [p.index, p]));
    for (const [key, list] of this.#received) {
      for (let i = 1; i < list.length; i++) {
        if (list[i]! <= list[i - 1]!) throw new Error(`point to point ${key}: ${list[i]} arrived after ${list[i - 1]} (out of order or twice)`);
      }
    }
    for (const [key, count] of this.#sent) {
      const [from, to] = key.split(">").map((n) => byIndex.get(Number(n))!);
      if (from!.status !== "running" || to!.status !== "running" || this.#sim.everSeparated(from!.host, to!.host)) continue;
      const failure = this.#failed.get(key);
      if (failure !== undefined) throw new Error(`point to point ${key}: a send failed between live members: ${failure}`);
      const got = this.#received.get(key) ?? [];
      if (got.length !== count) throw new Error(`point to point ${key}: ${got.length} of ${count} messages arrived (last ${got.at(-1)})`);
    }
  }
}

/**
 * Invariant 5: a producer sends N messages to a queue with 2–3 consumers, one of which may crash
 * mid-run. Every send must resolve (no message lost), and no message may have been processed twice by
 * consumers still alive at the end (a crashed one may have processed some before dying).
 */
async function runQueueWorkload(sim: GroupSim, rng: SeededRandom, crashes: CrashRecord[]): Promise<{ messages: number; crashed: Proc | undefined }> {
  const running = shuffle(sim.running(), rng);
  const consumers = running.slice(0, Math.min(running.length, 2 + rng.nextInt(2)));
  // The producer is another member when there is one (else a consumer: it then sends to itself too).
  const producer = running.length > consumers.length ? running[consumers.length]! : consumers[0]!;
  const processed = new Map<Proc, Map<number, number>>();
  for (const consumer of consumers) {
    const counts = new Map<number, number>();
    processed.set(consumer, counts);
    consumer.channel.consumeQueue(QUEUE, (message) => {
      const number = new DataView(message.payload.buffer, message.payload.byteOffset).getUint32(0);
      counts.set(number, (counts.get(number) ?? 0) + 1);
      sim.note(`p${consumer.index} processes queue message ${number}`);
    });
  }
  sim.note(`queue: producer p${producer.index}, consumers ${consumers.map((c) => `p${c.index}`).join(" ")}`);
  // Consumers announce their queues in their heartbeats: let the producer hear them.
  await sim.run(3 * TIMING.heartbeatIntervalMs);
  const total = 20 + rng.nextInt(60);
  const victims = consumers.filter((c) => c !== producer);
  const victim = victims.length > 0 && rng.next() < 0.5 ? victims[rng.nextInt(victims.length)] : undefined;
  const crashAt = rng.nextInt(total);
  const outcome: Array<"pending" | "done" | string> = new Array(total).fill("pending");
  for (let n = 0; n < total; n++) {
    if (victim !== undefined && n === crashAt) {
      sim.crash(victim);
      crashes.push({ proc: victim, at: sim.now });
    }
    const payload = new Uint8Array(4 + rng.nextInt(100));
    new DataView(payload.buffer).setUint32(0, n);
    producer.channel.sendToQueue(QUEUE, payload, { timeoutMs: 20_000 }).then(
      () => (outcome[n] = "done"),
      (error: unknown) => (outcome[n] = String(error)),
    );
    if (n % 5 === 4) await sim.run(10 + rng.nextInt(30), 5);
  }
  await sim.runUntil(() => outcome.every((o) => o !== "pending"), 30_000, "the queue messages to settle");
  const failed = outcome.findIndex((o) => o !== "done");
  if (failed >= 0) throw new Error(`queue message ${failed} was not processed: ${outcome[failed]}`);
  for (let n = 0; n < total; n++) {
    const byAll = [...processed.values()].reduce((sum, counts) => sum + (counts.get(n) ?? 0), 0);
    if (byAll === 0) throw new Error(`queue message ${n} resolved but no consumer processed it`);
    const byLive = consumers.filter((c) => c.status === "running").reduce((sum, c) => sum + (processed.get(c)!.get(n) ?? 0), 0);
    if (byLive > 1) throw new Error(`queue message ${n} was processed ${byLive} times by live consumers`);
  }
  return { messages: total, crashed: victim };
}

function shuffle<T>(list: readonly T[], rng: SeededRandom): T[] {
  const copy = [...list];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}
