/**
 * Whether a sender's losses are shared by its receivers, learnt from its own repairs, to choose whom a
 * first NACK's repair goes to.
 *
 * A repair first goes to the one receiver that asked; a second receiver asking within the holdoff makes
 * it go to everyone. That keeps one lossy receiver's repairs off the others, but a loss every receiver
 * shares (the sender's own link, a switch) then always costs two NACKs before the repair reaches them.
 * So the sender watches how its one-receiver repairs end: once most of them were asked for again by a
 * second receiver, its losses are shared, and a first NACK's repair goes to everyone at once — every
 * other receiver's NACK timer is then met by the repair (one NACK per loss). One repair in
 * `PROBE_EVERY` still goes to its asker alone, so the sender notices when losses stop being shared.
 * A new sender starts just short of shared: two repairs asked for twice tell it so, where each costs
 * every receiver missing it a second NACK; one asked for by its receiver alone says the opposite.
 */
export class RepairScope {
  /** Share of recent one-receiver repairs that a second receiver asked for too (a moving average). */
  #shared = START;
  /** One-receiver repairs not yet judged: a second asker may still come within the holdoff. */
  readonly #open = new Map<number, number>();
  #firsts = 0;

  constructor(private readonly holdoffMs: number) {}

  /** Whom the repairs a NACK asks for first go to (one decision per NACK: a datagram's messages alike). */
  choose(now: number): "one" | "everyone" {
    this.#judge(now);
    return this.#shared >= SHARED && ++this.#firsts % PROBE_EVERY !== 0 ? "everyone" : "one";
  }

  /** `seq` was repaired to the one receiver that asked: a second one may ask within the holdoff. */
  sentToOne(seq: number, now: number): void {
    if (this.#open.size >= MAX_OPEN) this.#open.delete(this.#open.keys().next().value!);
    this.#open.set(seq, now);
  }

  /** A second receiver asked for `seq` within the holdoff. */
  askedAgain(seq: number): void {
    if (this.#open.delete(seq)) this.#learn(1);
  }

  // One-receiver repairs the holdoff has passed on were asked for by that receiver alone.
  #judge(now: number): void {
    for (const [seq, at] of this.#open) {
      if (now - at < this.holdoffMs) break;
      this.#open.delete(seq);
      this.#learn(0);
    }
  }

  #learn(shared: 0 | 1): void {
    this.#shared += (shared - this.#shared) * WEIGHT;
  }
}

/** Past this share of repairs asked for twice, losses count as shared. */
const SHARED = 0.5;
/** Where the share starts: two repairs asked for twice take it past SHARED (0.4 → 0.475 → 0.54). */
const START = 0.4;
/** Weight of each judged repair in the moving average (about the last 8 count). */
const WEIGHT = 1 / 8;
/** While losses are shared, every this many NACKs one is still repaired to its asker alone. */
const PROBE_EVERY = 4;
/** Repairs awaiting judgement at most (the oldest is forgotten unjudged past it). */
const MAX_OPEN = 1_024;
