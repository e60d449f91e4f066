import * as z from "zod";
import { parseOptions } from "../options.ts";
import { MAX_UDP_PAYLOAD_BYTES, type TransportOptions } from "./transport.ts";

const port = z.number().int().min(0).max(65_535);
const bytes = z.number().int().positive();

/** The zod schema of `TransportOptions`, with the defaults documented there. */
export const transportOptionsSchema: z.ZodType<ResolvedTransportOptions, TransportOptions> = z.strictObject({
  bindAddress: z.string().min(1).default("0.0.0.0"),
  port: port.default(0),
  reuseAddress: z.boolean().default(false),
  multicastInterface: z.string().min(1).optional(),
  multicastTtl: z.number().int().min(0).max(255).default(1),
  multicastLoopback: z.boolean().default(true),
  maxDatagramBytes: bytes.max(MAX_UDP_PAYLOAD_BYTES).default(MAX_UDP_PAYLOAD_BYTES),
  receiveBufferBytes: bytes.optional(),
  sendBufferBytes: bytes.optional(),
});

/** {@link TransportOptions} with their defaults filled in. */
export interface ResolvedTransportOptions {
  readonly bindAddress: string;
  readonly port: number;
  readonly reuseAddress: boolean;
  readonly multicastInterface?: string | undefined;
  readonly multicastTtl: number;
  readonly multicastLoopback: boolean;
  readonly maxDatagramBytes: number;
  readonly receiveBufferBytes?: number | undefined;
  readonly sendBufferBytes?: number | undefined;
}

/** Validates transport options and fills in defaults; throws `INVALID_OPTION` naming the field. */
export function resolveTransportOptions(options: TransportOptions | undefined): ResolvedTransportOptions {
  return parseOptions(transportOptionsSchema, options, "transport");
}
