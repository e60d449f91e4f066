import type { Clock, TimerHandle } from "../transport/clock.ts";

/**
 * A protocol unit as its driver sees it: a state machine that never reads a clock or arms a timer of
 * its own. It says when it next needs to act (`pollTimeout`), and acts when told the time has come.
 * Inputs (datagrams, user calls) reach it through its own methods, each given `now`: its deadline moves
 * only through calls on it, so a deadline polled earlier in a turn that called nothing on any unit holds.
 */
export interface TimedUnit {
  /** The earliest time, on the driver's clock, at which `handleTimeout` is due; `Infinity` for never. */
  pollTimeout(): number;
  /** Does whatever is due at `now` (it may be called early: then it does nothing). */
  handleTimeout(now: number): void;
}

/**
 * The one piece that turns a channel's units into a running member (quinn-proto's shape): after each
 * turn of inputs it flushes the datagrams they produced and arms one timer — for the earliest deadline
 * of any unit — and when that timer fires it takes a turn, after the inputs ready by then, that hands
 * the time to the units that are due. Units never re-enter each other through it, and nothing in them
 * waits on the event loop.
 *
 * A turn waits for the inputs ready now (every datagram the runtime has read), so that what they
 * produce goes out bundled — except the first input of a round of the event loop, whose turn, where
 * the clock can (`Clock.soon`), is taken as soon as it has been handled: a request's reply, or the
 * next request made when a reply arrives, then leaves before the process goes back to its sockets
 * instead of after them. Inputs of the same round that come after it are bundled as before.
 */
export class Driver {
  readonly #clock: Clock;
  readonly #fault: (error: unknown) => void;
  readonly #units: TimedUnit[] = [];
  // Each unit's two methods, bound once: read from units of several classes in every turn, they were a
  // megamorphic property load each time.
  readonly #polls: Array<() => number> = [];
  readonly #handlers: Array<(now: number) => void> = [];
  readonly #endOfTurn: Array<() => void> = [];
  readonly #flushes: Array<() => void> = [];
  #once: Array<() => void> = [];
  #timer: TimerHandle | undefined;
  #armedAt = Number.POSITIVE_INFINITY;
  #turnScheduled = false;
  /** This round of the event loop took its early turn already (see {@link touch}); cleared by a deferred call. */
  #earlyTurnTaken = false;
  /** The round mark ({@link Clock.round}) of the last round that took an early turn; NaN: none yet. */
  #earlyTurnRound = Number.NaN;
  /** While a turn runs: what it touches takes the next deferred turn, never an early one. */
  #turning = false;
  /** The time the input that scheduled this round's early turn read (see {@link touchAt}); undefined: none given. */
  #earlyTurnAt: number | undefined;
  /** While the end-of-turn calls run: what they touch goes out with this turn's flush, which follows. */
  #endingTurn = false;
  #closed = false;

  /**
   * `fault`: where an exception thrown by a unit goes (the member carries on) — or by anything the
   * driver calls from its own turns, deferred calls and timer, which it guards itself: `clock` need
   * not guard what it calls, and a guarded one would make a closure for every turn.
   */
  constructor(clock: Clock, fault: (error: unknown) => void) {
    this.#clock = clock;
    this.#fault = fault;
  }

  /** The time now, on the driver's clock: what inputs hand to units. */
  now(): number {
    return this.#clock.now();
  }

  add(unit: TimedUnit): void {
    if (!this.#units.includes(unit)) {
      this.#units.push(unit);
      this.#polls.push(unit.pollTimeout.bind(unit));
      this.#handlers.push(unit.handleTimeout.bind(unit));
    }
    this.touch();
  }

  remove(unit: TimedUnit): void {
    const index = this.#units.indexOf(unit);
    if (index < 0) return;
    this.#units.splice(index, 1);
    this.#polls.splice(index, 1);
    this.#handlers.splice(index, 1);
  }

  /** Runs `fn` at the end of every turn that did something (before the timer is re-armed): a flush. Returns its remover. */
  onEndOfTurn(fn: () => void): () => void {
    this.#endOfTurn.push(fn);
    return () => {
      const index = this.#endOfTurn.indexOf(fn);
      if (index >= 0) this.#endOfTurn.splice(index, 1);
    };
  }

  /**
   * Runs `fn` at the end of every turn that did something, after every `onEndOfTurn` call: the flush
   * that sends what the turn produced, those calls' frames included (one datagram for a request and
   * an acknowledgement to the same peer). Returns its remover.
   */
  onFlush(fn: () => void): () => void {
    this.#flushes.push(fn);
    return () => {
      const index = this.#flushes.indexOf(fn);
      if (index >= 0) this.#flushes.splice(index, 1);
    };
  }

  /**
   * Runs `fn` once, at the end of this turn, after the flush: how a unit closes what a burst of inputs
   * built up (an FEC block). What it sends goes out in a datagram of its own, with the next flush.
   */
  atEndOfTurn(fn: () => void): void {
    this.#once.push(fn);
    this.touch();
  }

  /**
   * An input changed something: at the end of this turn — once the inputs ready now have all been
   * handled, so that what they produced goes out bundled — flush, and re-arm the timer. The first
   * input of a round of the event loop has its turn as soon as it has been handled (a microtask), so
   * what it produced does not wait for the runtime to read its sockets again: the one datagram of a
   * request/reply round trip goes out at once, and a burst's first datagram alone goes out early.
   */
  touch(): void {
    this.#schedule(true, undefined);
  }

  /**
   * {@link touch}, from an input that read the driver's time `now` as it began (a datagram): should its
   * turn be the round's early one, that turn takes `now` as its time instead of reading the clock again —
   * it comes before the runtime's next callback, once the input and the microtasks it queued have run
   * (the code a reply resumed). A deadline that falls due meanwhile is then the next turn's, or its timer's.
   */
  touchAt(now: number): void {
    this.#schedule(true, now);
  }

  // Schedules the next turn, unless one is scheduled or running its end already. `input`: an input's
  // turn, which may be taken early; a turn of the driver's own (a timer's, a deadline that has come)
  // always comes after the inputs ready by then. `at`: the input's time, for an early turn.
  #schedule(input: boolean, at: number | undefined): void {
    if (this.#turnScheduled || this.#endingTurn || this.#closed) return;
    this.#turnScheduled = true;
    const soon = this.#clock.soon;
    if (input && soon !== undefined && !this.#turning && this.#firstOfRound()) {
      this.#earlyTurnAt = at;
      soon(this.#earlyTurn);
      return;
    }
    this.#clock.defer(this.#turnEnded);
  }

  // Whether an input is the first of its round of the event loop to have a turn, which is then the
  // round's early one. By the clock's round mark where it has one; else the end of a round that took
  // its early turn is marked by a deferred call.
  #firstOfRound(): boolean {
    const round = this.#clock.round;
    if (round === undefined) {
      if (this.#earlyTurnTaken) return false;
      this.#earlyTurnTaken = true;
      return true;
    }
    const mark = round();
    if (mark === this.#earlyTurnRound) return false;
    this.#earlyTurnRound = mark;
    return true;
  }

  // The turn of a round's first input; once what it produced is out (not before: the reply waits for
  // nothing), the end of the round is marked, after its other inputs — where the clock has no round
  // mark — so that the next round's first may take one.
  readonly #earlyTurn = (): void => {
    this.#runTurn(this.#earlyTurnAt);
    if (this.#clock.round === undefined) this.#clock.defer(this.#roundEnded);
  };

  readonly #roundEnded = (): void => {
    this.#earlyTurnTaken = false;
  };

  /** Stops the timer; the driver does nothing more. */
  close(): void {
    this.#closed = true;
    this.#once = [];
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
  }

  // A deferred turn (or a timer's): it reads the clock.
  readonly #turnEnded = (): void => {
    this.#runTurn(undefined);
  };

  // Units whose deadline has come act first (a touch meanwhile is part of this turn), then the
  // end-of-turn calls, then the flush sends what the turn produced, then the one-shot calls run.
  // `at`: the turn's time, if an input read it already; undefined: the clock is read.
  #runTurn(at: number | undefined): void {
    if (this.#closed) {
      this.#turnScheduled = false;
      return;
    }
    this.#turning = true;
    try {
      this.#takeTurn(at ?? this.#clock.now());
    } catch (error) {
      // A unit's pollTimeout threw: the next input takes a turn again.
      this.#turnScheduled = false;
      this.#fault(error);
    } finally {
      this.#turning = false;
    }
  }

  #takeTurn(now: number): void {
    const polls = this.#polls;
    const handlers = this.#handlers;
    // The earliest deadline of the units that did not act, and whether any did.
    let next = Number.POSITIVE_INFINITY;
    let acted = false;
    for (let i = 0; i < polls.length; i++) {
      const at = polls[i]!();
      if (at <= now) {
        acted = true;
        // Guarded in place: no closure made for each unit that acts.
        try {
          handlers[i]!(now);
        } catch (error) {
          this.#fault(error);
        }
      } else if (at < next) next = at;
    }
    // Units change only through what is called on them: in a turn where none acted, no end-of-turn or
    // one-shot call ran, and the flush touched nothing (which takes another turn), each deadline is still
    // the one just polled — a request/reply's turn, say. Otherwise every unit is polled again.
    const moved = acted || this.#endOfTurn.length > 0 || this.#once.length > 0;
    this.#turnScheduled = false;
    this.#endingTurn = true;
    try {
      for (const fn of this.#endOfTurn) this.#guard(fn);
    } finally {
      // `fault` may throw (tests make it): touches must not stay held back after that.
      this.#endingTurn = false;
    }
    for (const fn of this.#flushes) this.#guard(fn);
    const once = this.#once;
    if (once.length > 0) {
      this.#once = [];
      for (const fn of once) this.#guard(fn);
    }
    this.#arm(now, moved || this.#turnScheduled ? undefined : next);
  }

  // A timer takes a turn like an input does, after the inputs ready now: a process that was descheduled
  // wakes to due timers and to datagrams already waiting, and runtimes run timers first (Node before it
  // polls its sockets). Acting at once, a unit would answer what those datagrams already settled — a
  // receiver would send the NACK another receiver's NACK, waiting unread, was about to hold back. (On
  // Deno, whose deferred turns all come before a pending receive, the system clock's timers themselves
  // wait for the sockets to be polled.)
  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    this.#schedule(false, undefined);
  };

  // One timer, for the earliest deadline. One armed for a later time is moved earlier; one armed for an
  // earlier time than needed fires early, finds nothing due, and is armed again. A deadline that has
  // come already (a unit that is to act now), or a one-shot call added by one, takes another turn, not a
  // timer: a timer of 0 ms waits a millisecond or more on some runtimes. `turnStarted`: the time the turn
  // read; the clock is read again only to arm a timer (most turns leave the earliest deadline as it was,
  // and a deadline that came during the turn with a timer armed for it already is that timer's).
  // `polled`: the earliest deadline, when the turn knows it still holds; undefined: the units are polled.
  #arm(turnStarted: number, polled: number | undefined): void {
    let next = polled ?? Number.POSITIVE_INFINITY;
    if (polled === undefined) {
      const polls = this.#polls;
      for (let i = 0; i < polls.length; i++) {
        const at = polls[i]!();
        if (at < next) next = at;
      }
    }
    if (next <= turnStarted || this.#once.length > 0) {
      this.#schedule(false, undefined);
      return;
    }
    if (next >= this.#armedAt) return;
    const now = this.#clock.now();
    if (next <= now) {
      this.#schedule(false, undefined);
      return;
    }
    this.#timer?.cancel();
    this.#armedAt = next;
    // (Never for no deadline: that is no earlier than any armed time.)
    this.#timer = this.#clock.setTimer(next - now, this.#fire);
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#fault(error);
    }
  }
}
