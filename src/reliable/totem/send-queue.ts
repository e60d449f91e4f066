import { Slab } from "../../wire/bytes.ts";
import { type DataFields, emptyDataFields } from "../../wire/frames.ts";
import { fillData, type OutgoingData } from "../protocol.ts";

/** What a send queue may hold: at most this many messages and (unless empty) this many payload bytes. */
export interface SendQueueLimits {
  readonly queueMessages: number;
  readonly queueBytes: number;
}

// Taken messages are dropped from the front of the array once this many have piled up there.
const COMPACT_AFTER = 4_096;

/**
 * The messages a Totem member has waiting for the token, oldest first, each numbered in the member's
 * own sequence (what reassembly goes by) and holding its own copy of the payload: the caller's buffer
 * is the caller's again as soon as `add` returns. Payloads are copied into slabs, one allocation per
 * many messages instead of one each.
 */
export class SendQueue {
  readonly #limits: SendQueueLimits;
  #messages: DataFields[] = [];
  #head = 0;
  #bytes = 0;
  #lastSeq = 0;
  readonly #copies = new Slab(1 << 20);

  constructor(limits: SendQueueLimits) {
    this.#limits = limits;
  }

  /** Messages waiting. */
  get length(): number {
    return this.#messages.length - this.#head;
  }

  /** Payload bytes waiting. */
  get bytes(): number {
    return this.#bytes;
  }

  /** True when a message of `bytes` bytes fits (an empty queue takes any one message). */
  canAdd(bytes: number): boolean {
    const length = this.length;
    if (length === 0) return true;
    return length < this.#limits.queueMessages && this.#bytes + bytes <= this.#limits.queueBytes;
  }

  /** Queues a copy of `out`; returns its number in this member's sequence. */
  add(out: OutgoingData, safe: boolean): number {
    const seq = ++this.#lastSeq;
    const data = fillData(emptyDataFields(), seq, out);
    // Every message is ordered: out of band means nothing here.
    data.outOfBand = false;
    data.payload = this.#copies.copy(out.payload);
    data.safe = safe;
    this.#messages.push(data);
    this.#bytes += data.payload.length;
    return seq;
  }

  /** The payload bytes of the waiting message `index` places from the oldest. */
  bytesAt(index: number): number {
    return this.#messages[this.#head + index]!.payload.length;
  }

  /** Takes the oldest waiting message; the caller checks `length` first. */
  take(): DataFields {
    const messages = this.#messages;
    const data = messages[this.#head]!;
    messages[this.#head++] = undefined as unknown as DataFields;
    this.#bytes -= data.payload.length;
    if (this.#head === messages.length) {
      this.#messages = [];
      this.#head = 0;
      this.#bytes = 0;
    } else if (this.#head >= COMPACT_AFTER && 2 * this.#head >= messages.length) {
      this.#messages = messages.slice(this.#head);
      this.#head = 0;
    }
    return data;
  }

  /** Drops every waiting message. */
  clear(): void {
    this.#messages = [];
    this.#head = 0;
    this.#bytes = 0;
  }
}
