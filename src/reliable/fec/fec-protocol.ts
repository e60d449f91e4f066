import { BlazeError } from "../../errors.ts";
import type { NackOptions } from "../nack/nack-protocol.ts";
import type { ProtocolHost, ReliabilityProtocol } from "../protocol.ts";
import type { FecOptions } from "./options.ts";

// eslint-disable-next-line @typescript-eslint/no-empty-interface, @typescript-eslint/no-unsafe-declaration-merging
export interface FecProtocol extends ReliabilityProtocol {}

/** NACK reliability with proactive Reed-Solomon parity (being written). */
export class FecProtocol {
  constructor(_host: ProtocolHost, _incarnation: number, _options: FecOptions, _nack: NackOptions) {
    throw new BlazeError("INVALID_OPTION", 'reliability "fec" is not available yet');
  }
}
