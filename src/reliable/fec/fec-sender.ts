import { encodeParityFrame, MAX_STRIDE, symbolOfFrame } from "./fec-wire.ts";
import type { FecOptions } from "./options.ts";
import { ReedSolomon } from "./reed-solomon.ts";

/** What the sender side needs from its protocol. */
export interface ParityOutput {
  multicastFrame(frame: Uint8Array): void;
  /** Calls `fn` once when the current burst of sends is over. */
  atEndOfTurn(fn: () => void): void;
}

// What a bundled Data frame takes beyond its symbol: the bundle's frame tag and length, the Data tag
// and length, the seq field. An estimate, used only to size the interleaving.
const FRAME_OVERHEAD = 12;

/**
 * The sender's side of FEC. Every Data frame the stream sends joins the open group; the group closes
 * when it is full (k packets per block times the stride) or when the current burst of sends is over
 * (the end of the turn), and each of its blocks is encoded and followed by m parity frames.
 *
 * A group of n packets starting at seq f is laid out as `stride` interleaved blocks: block j holds
 * f + j, f + j + stride, f + j + 2·stride, … The stride is chosen so that any `interleaveBytes` of
 * consecutive packets (one full datagram of bundled messages) hold at most m packets of a block — it is
 * measured on the group's packets as they are sent, over a sliding window — so a lost datagram costs
 * each block no more than its parity repairs. For packets so small that more than m · MAX_STRIDE of
 * them share a datagram, the stride stops at MAX_STRIDE (blocks stay full; a lost datagram costs
 * each block more than m, and NACK repairs it). The price is paid in
 * short bursts: a burst of n packets that fits in one datagram becomes blocks of about m packets, each
 * with m parity packets.
 */
export class FecSender {
  readonly #output: ParityOutput;
  readonly #k: number;
  readonly #m: number;
  readonly #interleaveBytes: number;
  readonly #codec = new ReedSolomon();
  readonly #counters: { paritySent: number };
  /** The open group's symbols, from seq `#first` on. */
  #symbols: Uint8Array[] = [];
  #first = 0;
  /**
   * The densest stretch of the group so far: the most consecutive packets that fit in
   * `interleaveBytes` (a sliding window from `#windowStart`, holding `#windowBytes`).
   */
  #densest = 0;
  #windowStart = 0;
  #windowBytes = 0;
  #flushScheduled = false;
  #closed = false;
  readonly #block: Uint8Array[] = [];
  readonly #flush = () => {
    this.#flushScheduled = false;
    if (!this.#closed) this.flush();
  };

  constructor(output: ParityOutput, options: FecOptions, counters: { paritySent: number }) {
    this.#output = output;
    this.#k = options.k;
    this.#m = options.m;
    this.#interleaveBytes = options.interleaveBytes;
    this.#counters = counters;
  }

  /** The Data frame of message `seq` was sent (the bytes the host returned). */
  add(seq: number, frame: Uint8Array): void {
    const symbol = symbolOfFrame(frame);
    if (symbol === undefined) return;
    const symbols = this.#symbols;
    if (symbols.length > 0 && seq !== this.#first + symbols.length) this.flush();
    if (symbols.length === 0) this.#first = seq;
    symbols.push(symbol);
    this.#windowBytes += symbol.length + FRAME_OVERHEAD;
    while (this.#windowBytes > this.#interleaveBytes && this.#windowStart < symbols.length) {
      this.#windowBytes -= symbols[this.#windowStart++]!.length + FRAME_OVERHEAD;
    }
    this.#densest = Math.max(this.#densest, symbols.length - this.#windowStart);
    if (symbols.length >= this.#k * this.#stride()) this.flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      this.#output.atEndOfTurn(this.#flush);
    }
  }

  /** Encodes the open group and sends its parity. */
  flush(): void {
    const symbols = this.#symbols;
    const n = symbols.length;
    if (n === 0) return;
    const stride = Math.max(Math.min(this.#stride(), n), Math.ceil(n / this.#k));
    const block = this.#block;
    for (let j = 0; j < stride; j++) {
      block.length = 0;
      for (let i = j; i < n; i += stride) block.push(symbols[i]!);
      this.#sendParity(this.#first + j, stride, block);
    }
    this.#symbols = [];
    this.#densest = 0;
    this.#windowStart = 0;
    this.#windowBytes = 0;
  }

  /** Stops: the open group is dropped. */
  close(): void {
    this.#closed = true;
    this.#symbols = [];
  }

  #sendParity(first: number, stride: number, block: readonly Uint8Array[]): void {
    const codec = this.#codec;
    const m = this.#m;
    codec.encode(block, m);
    for (let row = 0; row < m; row++) {
      this.#output.multicastFrame(
        encodeParityFrame({
          blockFirstSeq: first,
          k: block.length,
          m,
          parityIndex: row,
          stride,
          parity: codec.parity(row),
          lengthParity: codec.lengthParity(row),
        }),
      );
      this.#counters.paritySent++;
    }
  }

  // The stride that keeps the densest datagram's worth of the group's packets to m per block (at most
  // MAX_STRIDE); 1 when interleaving is off.
  #stride(): number {
    if (this.#interleaveBytes === 0) return 1;
    return Math.min(MAX_STRIDE, Math.max(1, Math.ceil(this.#densest / this.#m)));
  }
}
