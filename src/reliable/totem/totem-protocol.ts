import { BlazeError } from "../../errors.ts";
import type { ProtocolHost, ReliabilityProtocol } from "../protocol.ts";
import type { TotemOptions } from "./options.ts";

// eslint-disable-next-line @typescript-eslint/no-empty-interface, @typescript-eslint/no-unsafe-declaration-merging
export interface TotemProtocol extends ReliabilityProtocol {}

/** The Totem single-ring protocol (being written). */
export class TotemProtocol {
  constructor(_host: ProtocolHost, _incarnation: number, _options: TotemOptions) {
    throw new BlazeError("INVALID_OPTION", 'reliability "totem" is not available yet');
  }
}
