/**
 * What a site's gateway needs from the system that bridges sites: publish to a subject, subscribe to
 * one, and hear when the connection drops and comes back. NATS core (at most once, in order per
 * publisher and subject) is the one used in production; the simulated bus runs the same code under
 * virtual time.
 */
export interface SiteBus {
  /** Largest payload one publish may carry (the server's `max_payload` for NATS). */
  readonly maxPayloadBytes: number;
  /** Publishes `data` on `subject`; may be lost, as NATS core may lose it, but never throws. */
  publish(subject: string, data: Uint8Array): void;
  /** Calls `handler` with every message on `subject`; returns a function that unsubscribes. */
  subscribe(subject: string, handler: (data: Uint8Array) => void): () => void;
  /** Calls `listener` with false when the connection drops and true when it is back. */
  onConnection(listener: (connected: boolean) => void): void;
  /** Closes the connection; nothing is published or delivered after. */
  close(): Promise<void>;
}

/** Opens a gateway's connection to the bus; called when a member becomes its site's gateway. */
export type SiteBusFactory = (site: string) => Promise<SiteBus>;
