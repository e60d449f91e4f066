import type { OutgoingData } from "../reliable/protocol.ts";

/** What every piece of one message shares. */
export interface MessageHeader {
  readonly destination: string;
  readonly addressing: number;
  readonly format: number;
  readonly outOfBand: boolean;
  readonly requestId: number;
}

/**
 * Splits a payload into pieces of at most `fragmentBytes` (one piece, unfragmented, when it fits).
 * Pieces are object literals, not spreads: on a send path a spread costs microseconds a message.
 */
export function splitMessage(header: MessageHeader, payload: Uint8Array, fragmentBytes: number): OutgoingData[] {
  const { destination, addressing, format, outOfBand, requestId } = header;
  if (payload.length <= fragmentBytes) {
    return [{ destination, addressing, format, outOfBand, requestId, payload, fragmentIndex: 0, fragmentCount: 0, messageLength: 0 }];
  }
  const count = Math.ceil(payload.length / fragmentBytes);
  const pieces: OutgoingData[] = [];
  for (let i = 0; i < count; i++) {
    pieces.push({
      destination,
      addressing,
      format,
      outOfBand,
      requestId,
      payload: payload.subarray(i * fragmentBytes, Math.min(payload.length, (i + 1) * fragmentBytes)),
      fragmentIndex: i,
      fragmentCount: count,
      messageLength: payload.length,
    });
  }
  return pieces;
}
