import * as z from "zod";
import { parseOptions } from "../options.ts";

const port = z.number().int().min(0).max(65_535);
const msOrZero = z.number().int().min(0);

/** The zod schema of {@link StompGatewayOptions}; every default is documented there. */
export const stompGatewayOptionsSchema: z.ZodType<ResolvedGatewayOptions, StompGatewayOptions> = z.strictObject({
  port: port.optional(),
  websocketPort: port.optional(),
  host: z.string().min(1).default("127.0.0.1"),
  authenticate: z.custom<(login: string, passcode: string) => boolean | Promise<boolean>>((value) => typeof value === "function", "expected a function (login, passcode) => boolean").optional(),
  heartbeatSendMs: msOrZero.default(10_000),
  heartbeatReceiveMs: msOrZero.default(10_000),
  connectTimeoutMs: z.number().int().positive().default(10_000),
  maxConnections: z.number().int().min(1).default(1000),
  maxFrameBytes: z.number().int().min(1024).default(4 * 1024 * 1024),
  maxHeaders: z.number().int().min(1).default(64),
  maxHeaderBytes: z.number().int().min(256).default(64 * 1024),
  maxSubscriptions: z.number().int().min(1).default(1000),
  maxTransactions: z.number().int().min(1).default(100),
  maxQueuedFrames: z.number().int().min(2).default(1000),
  maxInFlightSends: z.number().int().min(2).default(1000),
  writeHighWaterBytes: z.number().int().min(1024).default(1024 * 1024),
});

/**
 * Options of a STOMP gateway (`createStompGateway`, `blaze gateway`).
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `port` | port | none | STOMP over TCP on this port (0: any free one) |
 * | `websocketPort` | port | none | STOMP over WebSocket (subprotocols v12.stomp, v11.stomp, v10.stomp) on this port |
 * | `host` | address | `"127.0.0.1"` | address the servers listen on |
 * | `authenticate` | function | none | `(login, passcode) => boolean \| Promise<boolean>`: checked at CONNECT; without it every client is let in |
 * | `heartbeatSendMs`, `heartbeatReceiveMs` | ms | `10000`, `10000` | the server's heart-beat offer (0: none); a client silent for twice the agreed interval is disconnected |
 * | `connectTimeoutMs` | ms | `10000` | a client that sends no CONNECT by then is disconnected |
 * | `maxConnections` | connections | `1000` | more are refused at once |
 * | `maxFrameBytes` | bytes | 4 MiB | largest frame (body included) |
 * | `maxHeaders` | headers | `64` | most headers of one frame |
 * | `maxHeaderBytes` | bytes | 64 KiB | most bytes of a frame's command and headers |
 * | `maxSubscriptions`, `maxTransactions` | | `1000`, `100` | per connection |
 * | `maxQueuedFrames` | frames | `1000` | frames read and not yet handled before the connection stops reading |
 * | `maxInFlightSends` | messages | `1000` | SENDs without receipt not yet replicated before the connection stops reading |
 * | `writeHighWaterBytes` | bytes | 1 MiB | bytes waiting to go to a client before its deliveries pause (a slow client holds back only its own subscriptions) |
 */
export interface StompGatewayOptions {
  readonly port?: number | undefined;
  readonly websocketPort?: number | undefined;
  readonly host?: string | undefined;
  readonly authenticate?: ((login: string, passcode: string) => boolean | Promise<boolean>) | undefined;
  readonly heartbeatSendMs?: number | undefined;
  readonly heartbeatReceiveMs?: number | undefined;
  readonly connectTimeoutMs?: number | undefined;
  readonly maxConnections?: number | undefined;
  readonly maxFrameBytes?: number | undefined;
  readonly maxHeaders?: number | undefined;
  readonly maxHeaderBytes?: number | undefined;
  readonly maxSubscriptions?: number | undefined;
  readonly maxTransactions?: number | undefined;
  readonly maxQueuedFrames?: number | undefined;
  readonly maxInFlightSends?: number | undefined;
  readonly writeHighWaterBytes?: number | undefined;
}

/** {@link StompGatewayOptions} with their defaults filled in. */
export interface ResolvedGatewayOptions {
  readonly port?: number | undefined;
  readonly websocketPort?: number | undefined;
  readonly host: string;
  readonly authenticate?: ((login: string, passcode: string) => boolean | Promise<boolean>) | undefined;
  readonly heartbeatSendMs: number;
  readonly heartbeatReceiveMs: number;
  readonly connectTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxFrameBytes: number;
  readonly maxHeaders: number;
  readonly maxHeaderBytes: number;
  readonly maxSubscriptions: number;
  readonly maxTransactions: number;
  readonly maxQueuedFrames: number;
  readonly maxInFlightSends: number;
  readonly writeHighWaterBytes: number;
}

export function resolveGatewayOptions(options: StompGatewayOptions | undefined): ResolvedGatewayOptions {
  const resolved = parseOptions(stompGatewayOptionsSchema, options, "stomp");
  return resolved;
}
