import type { Frame } from "../../gen/activeblaze/v1/envelope_pb.ts";
import type { DigestEntry } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { Driver, type TimedUnit } from "../../src/core/driver.ts";
import type { OutgoingData, PeerKey, ReliabilityProtocol } from "../../src/reliable/protocol.ts";
import type { VirtualClock } from "../../src/transport/virtual-clock.ts";
import type { DataFields } from "../../src/wire/frames.ts";

/**
 * A multicast protocol as a channel drives it, for unit tests that call it directly: every input with
 * the clock's time, and a driver that arms one timer for the protocol's deadlines. A fault inside the
 * protocol fails the test.
 */
export class DrivenProtocol<P extends ReliabilityProtocol & TimedUnit> {
  readonly #driver: Driver;

  constructor(
    readonly inner: P,
    private readonly clock: VirtualClock,
  ) {
    this.#driver = new Driver(clock, (error) => {
      throw error;
    });
    this.#driver.add(inner);
  }

  get stats(): P["stats"] {
    return this.inner.stats;
  }

  canSend(bytes: number): boolean {
    return this.inner.canSend(bytes);
  }

  send(data: OutgoingData): number {
    return this.#input(() => this.inner.send(data, this.clock.now()));
  }

  onData(peer: PeerKey, incarnation: number, data: DataFields): void {
    this.#input(() => this.inner.onData(peer, incarnation, data, this.clock.now()));
  }

  onControl(peer: PeerKey, incarnation: number, frame: Frame): void {
    this.#input(() => this.inner.onControl(peer, incarnation, frame, this.clock.now()));
  }

  onPeerUp(peer: PeerKey, incarnation: number): void {
    this.#input(() => this.inner.onPeerUp(peer, incarnation, this.clock.now()));
  }

  onPeerDown(peer: PeerKey): void {
    this.#input(() => this.inner.onPeerDown(peer, this.clock.now()));
  }

  onReceiverGone(peer: PeerKey): void {
    this.#input(() => this.inner.onReceiverGone?.(peer, this.clock.now()));
  }

  /** Runs `fn` at the end of every turn of the driver. */
  onEndOfTurn(fn: () => void): void {
    this.#driver.onEndOfTurn(fn);
  }

  heartbeat(): { highestSeq: number; lowestSeq: number; digest: DigestEntry[] } {
    return this.inner.heartbeat();
  }

  close(): void {
    this.inner.close();
    this.#driver.close();
  }

  #input<T>(fn: () => T): T {
    const result = fn();
    this.#driver.touch();
    return result;
  }
}
