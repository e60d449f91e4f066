import type { FecParity } from "../../../gen/activeblaze/v1/fec_pb.ts";
import type { DataFields } from "../../wire/frames.ts";
import type { PeerKey } from "../protocol.ts";
import { MAX_STRIDE, type ParityFields, parityFields, readSymbol, SymbolWriter } from "./fec-wire.ts";
import { MAX_K, type ParitySymbol, ReedSolomon } from "./reed-solomon.ts";

/** The FEC counters a receiver keeps (part of the protocol's stats). */
export interface FecReceiveCounters {
  parityReceived: number;
  /** Malformed or inconsistent parity frames, dropped. */
  parityInvalid: number;
  /** Packets rebuilt from parity. */
  recovered: number;
  /** Blocks whose every lost packet parity rebuilt, with no retransmission. */
  blocksRecovered: number;
  /** Blocks with losses that parity alone could not repair (left to NACK). */
  blocksUnrecovered: number;
}

/** How many received packets of each sender are kept as sources for rebuilding (a power of two). */
const HISTORY_PACKETS = 2 * MAX_K * MAX_STRIDE;
/** …and at most this many payload bytes of them. */
const HISTORY_BYTES = 8 * 1024 * 1024;
/** Most blocks per sender waiting for more parity or more packets. */
const MAX_PENDING_BLOCKS = 1_024;

/** Recently received packets of one sender, by seq: the sources a block is rebuilt from. */
class SourceHistory {
  readonly #slots: Array<DataFields | undefined> = new Array(HISTORY_PACKETS);
  readonly #seqs = new Float64Array(HISTORY_PACKETS).fill(-1);
  /** Nothing below this seq is held (it was never received here, or is forgotten). */
  low: number;
  #bytes = 0;

  constructor(first: number) {
    this.low = first;
  }

  get(seq: number): DataFields | undefined {
    const slot = seq & (HISTORY_PACKETS - 1);
    return seq >= this.low && this.#seqs[slot] === seq ? this.#slots[slot] : undefined;
  }

  add(data: DataFields): void {
    const seq = data.seq;
    if (seq < this.low) return;
    const slot = seq & (HISTORY_PACKETS - 1);
    if (this.#seqs[slot] !== seq) {
      this.#evict(slot);
      this.#seqs[slot] = seq;
      this.#slots[slot] = data;
      this.#bytes += data.payload.length;
    }
    if (seq - HISTORY_PACKETS >= this.low) this.low = seq - HISTORY_PACKETS + 1;
    while (this.#bytes > HISTORY_BYTES && this.low < seq) {
      const oldest = this.low & (HISTORY_PACKETS - 1);
      if (this.#seqs[oldest] === this.low) this.#evict(oldest);
      this.low++;
    }
  }

  #evict(slot: number): void {
    const held = this.#slots[slot];
    if (held !== undefined) this.#bytes -= held.payload.length;
    this.#slots[slot] = undefined;
    this.#seqs[slot] = -1;
  }
}

/** A block whose parity has arrived while more of its packets are missing than parity can rebuild. */
interface PendingBlock {
  readonly first: number;
  readonly k: number;
  readonly m: number;
  readonly stride: number;
  readonly parity: ParitySymbol[];
  /** Its packets not received yet. */
  missing: number;
  /** A missing packet arrived after all (retransmitted, or late): parity did not do it alone. */
  late: boolean;
}

interface SenderState {
  readonly incarnation: number;
  readonly history: SourceHistory;
  readonly pending: Map<number, PendingBlock>;
  /** Missing seq → its pending block. */
  readonly waiting: Map<number, PendingBlock>;
}

/**
 * The receiver's side of FEC: keeps each sender's recent packets, and when a block's parity shows
 * that up to m of its packets are missing, rebuilds them and hands them on as if received. Parity
 * that cannot help yet (more missing than parity so far) waits for more parity or packets; anything
 * that stays missing is NACK's to repair.
 */
export class FecReceiver {
  readonly #counters: FecReceiveCounters;
  /** Where packets (received and rebuilt) go on: the NACK receiver. */
  readonly #deliver: (peer: PeerKey, incarnation: number, data: DataFields, now: number) => void;
  readonly #senders = new Map<PeerKey, SenderState>();
  readonly #codec = new ReedSolomon();
  readonly #writer = new SymbolWriter();

  constructor(counters: FecReceiveCounters, deliver: (peer: PeerKey, incarnation: number, data: DataFields, now: number) => void) {
    this.#counters = counters;
    this.#deliver = deliver;
  }

  /** A multicast Data frame arrived: keep it, pass it on, and rebuild what it makes rebuildable. */
  onData(peer: PeerKey, incarnation: number, data: DataFields, now: number): void {
    let sender = this.#senders.get(peer);
    if (sender === undefined || sender.incarnation !== incarnation) {
      sender = { incarnation, history: new SourceHistory(data.seq), pending: new Map(), waiting: new Map() };
      this.#senders.set(peer, sender);
    }
    sender.history.add(data);
    this.#deliver(peer, incarnation, data, now);
    if (sender.waiting.size === 0) return;
    const block = sender.waiting.get(data.seq);
    if (block === undefined) return;
    sender.waiting.delete(data.seq);
    block.missing--;
    block.late = true;
    if (block.missing === 0) this.#forget(sender, block, false);
    else if (block.missing <= block.parity.length) this.#rebuild(peer, sender, block, now);
  }

  /** A FecParity frame arrived. Bad ones are counted and dropped; nothing here throws. */
  onParity(peer: PeerKey, incarnation: number, parity: FecParity, now: number): void {
    const fields = parityFields(parity);
    if (fields === undefined) {
      this.#counters.parityInvalid++;
      return;
    }
    this.#counters.parityReceived++;
    const sender = this.#senders.get(peer);
    // Parity of a sender not heard yet, or of a block older than what is kept: nothing to rebuild from.
    if (sender === undefined || sender.incarnation !== incarnation || fields.blockFirstSeq < sender.history.low) return;
    const symbol: ParitySymbol = { row: fields.parityIndex, symbol: fields.parity, lengthParity: fields.lengthParity };
    const known = sender.pending.get(fields.blockFirstSeq);
    if (known !== undefined) {
      if (!sameShape(known, fields) || known.parity[0]!.symbol.length !== fields.parity.length) {
        this.#counters.parityInvalid++;
        return;
      }
      if (known.parity.some((p) => p.row === symbol.row)) return;
      known.parity.push(symbol);
      if (known.missing <= known.parity.length) this.#rebuild(peer, sender, known, now);
      return;
    }
    const missing: number[] = [];
    for (let i = 0; i < fields.k; i++) {
      const seq = fields.blockFirstSeq + i * fields.stride;
      if (sender.history.get(seq) === undefined) missing.push(seq);
    }
    if (missing.length === 0) return;
    const block: PendingBlock = { first: fields.blockFirstSeq, k: fields.k, m: fields.m, stride: fields.stride, parity: [symbol], missing: missing.length, late: false };
    if (missing.length === 1) {
      this.#rebuild(peer, sender, block, now);
      return;
    }
    this.#makeRoom(sender);
    sender.pending.set(block.first, block);
    for (const seq of missing) sender.waiting.set(seq, block);
  }

  /** A peer was heard for the first time, or as another incarnation: forget what was kept of an older one. */
  peerUp(peer: PeerKey, incarnation: number): void {
    if (this.#senders.get(peer)?.incarnation !== incarnation) this.#senders.delete(peer);
  }

  /** A peer left: forget what was kept of it. */
  forget(peer: PeerKey): void {
    this.#senders.delete(peer);
  }

  close(): void {
    this.#senders.clear();
  }

  #rebuild(peer: PeerKey, sender: SenderState, block: PendingBlock, now: number): void {
    const writer = this.#writer;
    writer.reset();
    const sources: Array<Uint8Array | undefined> = new Array(block.k);
    let missing = 0;
    for (let i = 0; i < block.k; i++) {
      const data = sender.history.get(block.first + i * block.stride);
      if (data === undefined) missing++;
      else sources[i] = writer.write(data);
    }
    // Packets kept as sources may have been forgotten since (a long wait): then it cannot be done.
    if (missing > block.parity.length) {
      this.#forget(sender, block, false);
      return;
    }
    const rebuilt = this.#codec.decode(sources, block.parity);
    if (rebuilt === undefined) {
      this.#counters.parityInvalid++;
      this.#forget(sender, block, false);
      return;
    }
    const packets: DataFields[] = [];
    for (let i = 0; i < block.k; i++) {
      const symbol = rebuilt[i];
      if (symbol === undefined) continue;
      const data = readSymbol(symbol, block.first + i * block.stride);
      if (data === undefined) {
        this.#counters.parityInvalid++;
        this.#forget(sender, block, false);
        return;
      }
      packets.push(data);
    }
    this.#forget(sender, block, packets.length > 0 && !block.late);
    for (const data of packets) {
      this.#counters.recovered++;
      sender.history.add(data);
      this.#deliver(peer, sender.incarnation, data, now);
    }
  }

  // The block is done: rebuilt by parity alone (`recovered`), or otherwise.
  #forget(sender: SenderState, block: PendingBlock, recovered: boolean): void {
    if (sender.pending.get(block.first) === block) {
      sender.pending.delete(block.first);
      for (let i = 0; i < block.k; i++) {
        const seq = block.first + i * block.stride;
        if (sender.waiting.get(seq) === block) sender.waiting.delete(seq);
      }
    }
    if (recovered) this.#counters.blocksRecovered++;
    else this.#counters.blocksUnrecovered++;
  }

  // Blocks older than the kept packets cannot be rebuilt any more; beyond the limit the oldest goes.
  #makeRoom(sender: SenderState): void {
    for (const block of sender.pending.values()) {
      if (block.first >= sender.history.low && sender.pending.size < MAX_PENDING_BLOCKS) return;
      this.#forget(sender, block, false);
    }
  }
}

function sameShape(block: PendingBlock, fields: ParityFields): boolean {
  return block.k === fields.k && block.m === fields.m && block.stride === fields.stride;
}
