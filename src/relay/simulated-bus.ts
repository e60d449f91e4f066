import { BlazeError } from "../errors.ts";
import type { RandomSource } from "../transport/clock.ts";
import type { VirtualClock } from "../transport/virtual-clock.ts";
import type { SiteBus, SiteBusFactory } from "./site-bus.ts";

export interface SimulatedBusOptions {
  readonly clock: VirtualClock;
  readonly random: RandomSource;
  /** One-way delay of a message through the server, in ms. Default 1–3. */
  readonly delayMs?: { readonly min: number; readonly max: number };
  /** Share of messages lost (NATS core is at most once: a slow consumer or a reconnect loses some). Default 0. */
  readonly loss?: number;
  /** Largest payload. Default 1 MiB, NATS's default `max_payload`. */
  readonly maxPayloadBytes?: number;
}

interface Connection {
  readonly name: string;
  readonly subscriptions: Map<string, Set<(data: Uint8Array) => void>>;
  readonly listeners: Set<(connected: boolean) => void>;
  /** Whether this connection's process is alive: a crashed host's connection goes silent. */
  readonly alive: () => boolean;
  closed: boolean;
}

/**
 * A NATS server under virtual time, for seeded simulations of bridged sites: subjects matched exactly,
 * each message delivered after a random delay (in order per publisher and subject, as NATS keeps it),
 * lost with probability `loss`, never delivered to a closed connection or one whose process is dead.
 * `disconnect()` cuts a site off the server (its gateway's connection drops, as when the link to the
 * server fails) until `reconnect()`.
 */
export class SimulatedBus {
  readonly #connections = new Set<Connection>();
  readonly #cut = new Set<string>();
  /** The latest delivery time per publisher and subject: NATS keeps a publisher's order on a subject. */
  readonly #lastDelivery = new Map<string, number>();
  readonly #delay: { readonly min: number; readonly max: number };
  readonly #loss: number;
  readonly #maxPayloadBytes: number;
  published = 0;
  delivered = 0;
  lost = 0;

  constructor(private readonly options: SimulatedBusOptions) {
    this.#delay = options.delayMs ?? { min: 1, max: 3 };
    this.#loss = options.loss ?? 0;
    this.#maxPayloadBytes = options.maxPayloadBytes ?? 1024 * 1024;
  }

  /** A factory for members: their connection lives while `alive()` (e.g. while their host has not crashed). */
  factory(alive: () => boolean = () => true): SiteBusFactory {
    return async (site) => {
      if (this.#cut.has(site)) throw new BlazeError("TRANSPORT_ERROR", `site ${site} cannot reach the bus`);
      return this.#connect(site, alive);
    };
  }

  /** Cuts `site` off the server: its connections drop and new ones fail, until `reconnect`. */
  disconnect(site: string): void {
    this.#cut.add(site);
    for (const connection of this.#connections) if (connection.name === site) for (const listener of connection.listeners) listener(false);
  }

  reconnect(site: string): void {
    this.#cut.delete(site);
    for (const connection of this.#connections) if (connection.name === site && !connection.closed) for (const listener of connection.listeners) listener(true);
  }

  #connect(name: string, alive: () => boolean): SiteBus {
    const connection: Connection = { name, subscriptions: new Map(), listeners: new Set(), alive, closed: false };
    this.#connections.add(connection);
    const id = `${name}#${this.#connections.size}#${this.published}`;
    return {
      maxPayloadBytes: this.#maxPayloadBytes,
      publish: (subject, data) => this.#publish(connection, id, subject, data),
      subscribe: (subject, handler) => {
        let set = connection.subscriptions.get(subject);
        if (set === undefined) connection.subscriptions.set(subject, (set = new Set()));
        set.add(handler);
        return () => set.delete(handler);
      },
      onConnection: (listener) => void connection.listeners.add(listener),
      close: async () => {
        connection.closed = true;
        this.#connections.delete(connection);
      },
    };
  }

  #usable(connection: Connection): boolean {
    return !connection.closed && connection.alive() && !this.#cut.has(connection.name);
  }

  #publish(from: Connection, publisher: string, subject: string, data: Uint8Array): void {
    if (!this.#usable(from) || data.length > this.#maxPayloadBytes) return;
    this.published++;
    const copy = data.slice();
    const clock = this.options.clock;
    const random = this.options.random;
    for (const connection of this.#connections) {
      const handlers = connection.subscriptions.get(subject);
      if (handlers === undefined || handlers.size === 0) continue;
      if (random.next() < this.#loss) {
        this.lost++;
        continue;
      }
      const key = `${publisher}>${subject}>${connection.name}`;
      const at = Math.max(clock.now() + this.#delay.min + random.next() * (this.#delay.max - this.#delay.min), this.#lastDelivery.get(key) ?? 0);
      this.#lastDelivery.set(key, at);
      clock.setTimer(at - clock.now(), () => {
        if (!this.#usable(connection)) return;
        this.delivered++;
        for (const handler of [...handlers]) handler(copy);
      });
    }
  }
}
