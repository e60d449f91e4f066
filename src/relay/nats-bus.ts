import type { NatsConnection } from "@nats-io/transport-node";
import { BlazeError } from "../errors.ts";
import type { NatsOptions } from "./options.ts";
import type { SiteBus, SiteBusFactory } from "./site-bus.ts";

/**
 * The bus over NATS core, through the official client `@nats-io/transport-node` (an optional peer
 * dependency: only a gateway loads it, when it takes the role). The client reconnects by itself,
 * without end; what is published while it is disconnected is lost (the relay's streams resend it).
 */
export function natsBus(options: NatsOptions): SiteBusFactory {
  return async (site) => {
    let client: typeof import("@nats-io/transport-node");
    try {
      client = await import("@nats-io/transport-node");
    } catch (error) {
      throw new BlazeError("ILLEGAL_STATE", "a site's gateway needs the NATS client: npm install @nats-io/transport-node", { cause: error });
    }
    let connection: NatsConnection;
    try {
      connection = await client.connect({
        servers: [...options.servers],
        name: options.name ?? `activeblaze ${site}`,
        ...(options.user === undefined ? {} : { user: options.user, pass: options.pass }),
        ...(options.token === undefined ? {} : { token: options.token }),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
    } catch (error) {
      throw new BlazeError("TRANSPORT_ERROR", `cannot connect to NATS (${options.servers.join(", ")}): ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    return new NatsSiteBus(connection);
  };
}

class NatsSiteBus implements SiteBus {
  readonly #listeners = new Set<(connected: boolean) => void>();

  constructor(private readonly connection: NatsConnection) {
    void this.#watch();
  }

  get maxPayloadBytes(): number {
    return this.connection.info?.max_payload ?? 1024 * 1024;
  }

  publish(subject: string, data: Uint8Array): void {
    try {
      this.connection.publish(subject, data);
    } catch {
      // Closed or draining: lost, as a dropped connection loses it.
    }
  }

  subscribe(subject: string, handler: (data: Uint8Array) => void): () => void {
    const subscription = this.connection.subscribe(subject, {
      callback: (error, message) => {
        if (error === null) handler(message.data);
      },
    });
    return () => subscription.unsubscribe();
  }

  onConnection(listener: (connected: boolean) => void): void {
    this.#listeners.add(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    await this.connection.close().catch(() => undefined);
  }

  async #watch(): Promise<void> {
    for await (const status of this.connection.status()) {
      if (status.type === "disconnect") for (const listener of this.#listeners) listener(false);
      else if (status.type === "reconnect") for (const listener of this.#listeners) listener(true);
    }
  }
}
