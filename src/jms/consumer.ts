import { BlazeError } from "../errors.ts";
import type { TimerHandle } from "../transport/clock.ts";
import type { AbortSignalLike } from "../web.ts";
import type { Destination } from "./destination.ts";
import type { Message } from "./message.ts";
import type { QueueRef } from "./queue-replica.ts";
import type { Selector } from "./selector.ts";
import type { WireMessage } from "./wire.ts";

/** A message on its way to a consumer, before the application has it. */
export interface Incoming {
  readonly wire: WireMessage;
  /** A queue message: its queue, id and the version of the assignment that gave it to this consumer. */
  readonly queue?: QueueRef;
  /** JMSXDeliveryCount of this delivery. */
  deliveryCount: number;
  /** When it expires on the factory's clock (Infinity: never). */
  readonly expiresAt: number;
}

/** How a consumer hands messages to its context, which owns acknowledgement and transactions. */
export interface ConsumerHost {
  readonly started: boolean;
  /** Turns an incoming message into the application's message and records it as delivered; undefined: expired or unreadable (dropped). */
  deliver(consumer: JMSConsumer, incoming: Incoming): Message | undefined;
  /** The application is done with the message (a listener returned, the next one was asked for). */
  processed(message: Message): void;
  /** Gives queue messages back that the application never saw (the consumer closes). */
  giveBack(consumer: JMSConsumer, incoming: readonly Incoming[]): void;
  closed(consumer: JMSConsumer): void;
  setTimer(delayMs: number, fn: () => void): TimerHandle;
  listenerFailed(error: unknown): void;
  /** Runs listener deliveries one at a time per context (JMS: a session's listeners run serially). */
  schedule(consumer: JMSConsumer): void;
  /**
   * Hands a message for a consumer with nothing pending to its listener at once, when no other delivery
   * of the context is under way or waiting (it would be the next one); false, and nothing done, otherwise.
   */
  deliverNow(consumer: JMSConsumer, incoming: Incoming): boolean;
}

export type MessageListener = (message: Message) => void | Promise<void>;

export interface ReceiveOptions {
  /** Give up with `TIMEOUT` after this many ms. Default: wait until a message comes or the consumer closes. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignalLike;
}

interface Waiter {
  readonly resolve: (message: Message) => void;
  readonly reject: (error: BlazeError) => void;
}

const PRIORITIES = 10;

/**
 * A JMS consumer: messages of one destination (with a selector), in priority order then arrival order.
 * Take them with `receive`, as an async iterator, or with a listener — one of those at a time.
 */
export class JMSConsumer implements AsyncIterable<Message> {
  /** Pending messages by priority (0–9), each in arrival order. */
  readonly #lanes: Incoming[][] = Array.from({ length: PRIORITIES }, () => []);
  /** Bit p set: lane p holds messages (the highest is found without looking at the empty lanes). */
  #filled = 0;
  #count = 0;
  readonly #waiters: Waiter[] = [];
  #listener: MessageListener | undefined;
  #closed = false;
  /** The message an iterator handed out last, processed when the next is asked for. */
  #iterated: Message | undefined;

  /** @internal A context makes its consumers (`createConsumer`). */
  constructor(
    /** @internal */
    readonly host: ConsumerHost,
    /** This consumer's id among the cluster's: the member id, "/", its number. */
    readonly id: string,
    readonly destination: Destination,
    readonly selector: Selector | undefined,
    readonly noLocal: boolean,
    readonly prefetch: number,
    /** For a shared subscription: its name. */
    readonly subscription: string | undefined,
    private readonly maxBuffered: number,
    private readonly onOverflow: () => void,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  /** JMS's getMessageSelector. */
  get messageSelector(): string | null {
    return this.selector?.text ?? null;
  }

  /** Messages waiting here (prefetched queue messages included). */
  get pending(): number {
    return this.#count;
  }

  /** @internal Adds a message; `first` puts it before others of its priority (a redelivery). */
  push(incoming: Incoming, first = false): void {
    if (this.#closed) return;
    // A topic message for an idle listener goes to it straight away, as it would through the lanes.
    if (this.#count === 0 && !first && incoming.queue === undefined && this.#listener !== undefined && this.host.deliverNow(this, incoming)) return;
    const priority = Math.min(PRIORITIES - 1, Math.max(0, incoming.wire.headers.priority));
    const lane = this.#lanes[priority]!;
    if (first) lane.unshift(incoming);
    else lane.push(incoming);
    this.#filled |= 1 << priority;
    this.#count++;
    if (incoming.queue === undefined && this.#count > this.maxBuffered) this.#dropOldestTopicMessage();
    this.drain();
  }

  /** @internal Hands pending messages to waiting receivers, or schedules the listener. */
  drain(): void {
    if (!this.host.started || this.#closed) return;
    while (this.#waiters.length > 0 && this.#count > 0) {
      const message = this.#take();
      if (message === undefined) break;
      this.#waiters.shift()!.resolve(message);
    }
    if (this.#listener !== undefined && this.#count > 0) this.host.schedule(this);
  }

  /** @internal The next message for the listener (read `listener` first), for the context's serial delivery. */
  nextForListener(): Message | undefined {
    if (this.#listener === undefined || !this.host.started || this.#closed) return undefined;
    return this.#take();
  }

  /** @internal */
  get listener(): MessageListener | undefined {
    return this.#listener;
  }

  /**
   * The next message. Without `timeoutMs` it waits until one comes; with it, rejects with `TIMEOUT`
   * (never a silent null); rejects with `CLOSED` when the consumer closes and `ABORTED` with the signal.
   */
  receive(options: ReceiveOptions = {}): Promise<Message> {
    if (this.#closed) return Promise.reject(new BlazeError("CLOSED", "receive() on a closed consumer"));
    if (this.#listener !== undefined) return Promise.reject(new BlazeError("ILLEGAL_STATE", "this consumer has a message listener: receive() is not allowed"));
    if (this.host.started) {
      const message = this.#take();
      if (message !== undefined) {
        this.host.processed(message);
        return Promise.resolve(message);
      }
    }
    const { timeoutMs, signal } = options;
    if (signal?.aborted) return Promise.reject(new BlazeError("ABORTED", "receive() was aborted", { cause: signal.reason }));
    return new Promise<Message>((resolve, reject) => {
      let timer: TimerHandle | undefined;
      const finish = () => {
        timer?.cancel();
        signal?.removeEventListener("abort", onAbort);
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
      };
      const waiter: Waiter = {
        resolve: (message) => {
          finish();
          this.host.processed(message);
          resolve(message);
        },
        reject: (error) => {
          finish();
          reject(error);
        },
      };
      const onAbort = () => waiter.reject(new BlazeError("ABORTED", "receive() was aborted", { cause: signal?.reason }));
      if (timeoutMs !== undefined) {
        if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new BlazeError("INVALID_ARGUMENT", `timeoutMs is a number of ms, 0 or more, not ${timeoutMs}`, { path: ["timeoutMs"] });
        timer = this.host.setTimer(timeoutMs, () => waiter.reject(new BlazeError("TIMEOUT", `no message on ${this.destination} within ${timeoutMs} ms`)));
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** The next message if one is waiting now (JMS's receiveNoWait), else undefined. */
  receiveNoWait(): Message | undefined {
    if (this.#closed || !this.host.started) return undefined;
    const message = this.#take();
    if (message !== undefined) this.host.processed(message);
    return message;
  }

  /** The next message's body (JMS's receiveBody); same waiting rules as `receive`. */
  async receiveBody<T = unknown>(options: ReceiveOptions = {}): Promise<T> {
    return (await this.receive(options)).getBody() as T;
  }

  /**
   * Messages as they come, for `for await`. In AUTO_ACKNOWLEDGE a message is acknowledged when the loop
   * asks for the next one (or ends), so one whose processing dies with the member is redelivered.
   */
  async *messages(options: { signal?: AbortSignalLike } = {}): AsyncGenerator<Message> {
    try {
      for (;;) {
        if (this.#iterated !== undefined) {
          const done = this.#iterated;
          this.#iterated = undefined;
          this.host.processed(done);
        }
        let message: Message;
        try {
          message = await this.#receiveRaw(options.signal);
        } catch (error) {
          if (error instanceof BlazeError && (error.code === "CLOSED" || error.code === "ABORTED")) return;
          throw error;
        }
        this.#iterated = message;
        yield message;
      }
    } finally {
      if (this.#iterated !== undefined) {
        const done = this.#iterated;
        this.#iterated = undefined;
        this.host.processed(done);
      }
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return this.messages();
  }

  /** JMS's setMessageListener: each message is passed to `listener` (awaited) in turn; null stops it. */
  setMessageListener(listener: MessageListener | null): void {
    if (this.#closed) throw new BlazeError("CLOSED", "setMessageListener() on a closed consumer");
    if (listener !== null && this.#waiters.length > 0) throw new BlazeError("ILLEGAL_STATE", "a receive() is waiting on this consumer");
    this.#listener = listener ?? undefined;
    this.drain();
  }

  getMessageListener(): MessageListener | null {
    return this.#listener ?? null;
  }

  /** Closes the consumer: waiting receives reject with `CLOSED`; queue messages it holds undelivered go back. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const undelivered = this.#lanes.flatMap((lane) => lane.splice(0));
    this.#filled = 0;
    this.#count = 0;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new BlazeError("CLOSED", "the consumer closed"));
    this.host.giveBack(this, undelivered.filter((incoming) => incoming.queue !== undefined));
    this.host.closed(this);
  }

  #receiveRaw(signal: AbortSignalLike | undefined): Promise<Message> {
    if (this.#closed) return Promise.reject(new BlazeError("CLOSED", "the consumer closed"));
    if (this.host.started) {
      const message = this.#take();
      if (message !== undefined) return Promise.resolve(message);
    }
    return new Promise<Message>((resolve, reject) => {
      const onAbort = () => waiter.reject(new BlazeError("ABORTED", "aborted", { cause: signal?.reason }));
      const waiter: Waiter = {
        resolve: (message) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(message);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          const at = this.#waiters.indexOf(waiter);
          if (at >= 0) this.#waiters.splice(at, 1);
          reject(error);
        },
      };
      if (signal?.aborted) return waiter.reject(new BlazeError("ABORTED", "aborted", { cause: signal.reason }));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** The next deliverable message (highest priority first), skipping expired ones. */
  #take(): Message | undefined {
    while (this.#count > 0) {
      // The highest filled lane: the highest bit set.
      const priority = 31 - Math.clz32(this.#filled);
      const lane = this.#lanes[priority]!;
      const incoming = lane.shift()!;
      if (lane.length === 0) this.#filled &= ~(1 << priority);
      this.#count--;
      const message = this.host.deliver(this, incoming);
      if (message !== undefined) return message;
    }
    return undefined;
  }

  /** A topic consumer holds topic messages only: the oldest of the lowest priority goes. */
  #dropOldestTopicMessage(): void {
    if (this.#filled === 0) return;
    // The lowest filled lane: the lowest bit set.
    const priority = 31 - Math.clz32(this.#filled & -this.#filled);
    const lane = this.#lanes[priority]!;
    lane.shift();
    if (lane.length === 0) this.#filled &= ~(1 << priority);
    this.#count--;
    this.onOverflow();
  }
}
