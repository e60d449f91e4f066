import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { BlazeError } from "../errors.ts";
import type { ConnectionFactory } from "../jms/connection-factory.ts";
import { resolveGatewayOptions, type ResolvedGatewayOptions, type StompGatewayOptions } from "./options.ts";
import { type SessionCounters, StompSession, type StompTransport } from "./session.ts";
import { acceptUpgrade } from "./websocket.ts";

/** What a gateway counts. */
export interface GatewayStats extends SessionCounters {
  /** Connections open now. */
  connections: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Connections refused (`maxConnections`, bad WebSocket handshakes). */
  refused: number;
}

const SUBPROTOCOLS = ["v12.stomp", "v11.stomp", "v10.stomp"];

/**
 * Starts a STOMP 1.2 gateway on a connection factory's member: STOMP clients (over TCP, and WebSocket
 * for browsers) send and subscribe to the cluster's topics and queues without joining it. It closes
 * with the factory (or with `close()`). Rejects with `BIND_FAILED` when a port cannot be bound.
 */
export async function createStompGateway(factory: ConnectionFactory, options?: StompGatewayOptions): Promise<StompGateway> {
  const gateway = new StompGateway(factory, resolveGatewayOptions(options));
  try {
    await gateway.listen();
  } catch (error) {
    await gateway.close();
    throw error;
  }
  factory.attach(gateway);
  return gateway;
}

export class StompGateway {
  readonly #factory: ConnectionFactory;
  readonly #options: ResolvedGatewayOptions;
  readonly #sessions = new Set<StompSession>();
  readonly #sockets = new Set<{ destroy(): void }>();
  readonly stats: GatewayStats = { connections: 0, accepted: 0, refused: 0, frames: 0, errors: 0, messagesIn: 0, messagesOut: 0 };
  #tcp: TcpServer | undefined;
  #http: HttpServer | undefined;
  #closed = false;

  constructor(factory: ConnectionFactory, options: ResolvedGatewayOptions) {
    this.#factory = factory;
    this.#options = options;
  }

  /** The TCP port STOMP listens on (undefined without one). */
  get port(): number | undefined {
    return (this.#tcp?.address() as AddressInfo | null)?.port;
  }

  /** The WebSocket port (undefined without one). */
  get websocketPort(): number | undefined {
    return (this.#http?.address() as AddressInfo | null)?.port;
  }

  /** @internal */
  async listen(): Promise<void> {
    const { port, websocketPort, host } = this.#options;
    if (port === undefined && websocketPort === undefined) throw new BlazeError("INVALID_OPTION", 'a STOMP gateway needs "port" or "websocketPort"', { path: ["port"] });
    if (port !== undefined) {
      this.#tcp = createTcpServer((socket) => this.#acceptTcp(socket));
      await listen(this.#tcp, port, host, "STOMP");
    }
    if (websocketPort !== undefined) {
      this.#http = createHttpServer((_request, response) => {
        response.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" }).end("STOMP over WebSocket: upgrade to one of v12.stomp, v11.stomp, v10.stomp\n");
      });
      this.#http.on("upgrade", (request, socket) => {
        if (!this.#admit()) {
          socket.end("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n");
          return;
        }
        let session: StompSession | undefined;
        const connection = acceptUpgrade(request, socket, SUBPROTOCOLS, { message: (payload) => session?.receive(payload), closed: () => session?.closed() }, this.#options.maxFrameBytes + this.#options.maxHeaderBytes);
        if (connection === undefined) {
          this.stats.refused++;
          this.stats.connections--;
          return;
        }
        this.#sockets.add(socket);
        socket.on("close", () => this.#sockets.delete(socket));
        const transport: StompTransport = {
          write: (bytes) => {
            corked(socket);
            connection.send(bytes, !isText(bytes));
            return connection.bufferedBytes < this.#options.writeHighWaterBytes;
          },
          get bufferedBytes() {
            return connection.bufferedBytes;
          },
          onDrain: (fn) => socket.once("drain", fn),
          pause: () => socket.pause(),
          resume: () => socket.resume(),
          close: () => connection.close(),
        };
        session = this.#session(transport);
      });
      await listen(this.#http, websocketPort, host, "STOMP over WebSocket");
    }
  }

  /** Closes the servers and every client connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const socket of this.#sockets) socket.destroy();
    for (const session of [...this.#sessions]) session.closed();
    await Promise.all([this.#tcp, this.#http].map((server) => (server === undefined ? undefined : new Promise<void>((resolve) => server.close(() => resolve())))));
  }

  #admit(): boolean {
    if (this.#closed || this.stats.connections >= this.#options.maxConnections) {
      this.stats.refused++;
      return false;
    }
    this.stats.connections++;
    this.stats.accepted++;
    return true;
  }

  #acceptTcp(socket: Socket): void {
    if (!this.#admit()) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    this.#sockets.add(socket);
    const transport: StompTransport = {
      write: (bytes) => {
        corked(socket);
        socket.write(bytes);
        return socket.writableLength < this.#options.writeHighWaterBytes;
      },
      get bufferedBytes() {
        return socket.writableLength;
      },
      onDrain: (fn) => socket.once("drain", fn),
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      close: () => socket.end(),
    };
    const session = this.#session(transport);
    socket.on("data", (chunk: Buffer) => session.receive(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      this.#sockets.delete(socket);
      session.closed();
    });
  }

  #session(transport: StompTransport): StompSession {
    const session = new StompSession(this.#factory, transport, this.#options, this.stats, () => {
      if (this.#sessions.delete(session)) this.stats.connections--;
    });
    this.#sessions.add(session);
    return session;
  }
}

function listen(server: TcpServer | HttpServer, port: number, host: string, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(new BlazeError("BIND_FAILED", `${what} cannot listen on ${host}:${port}: ${error.message}`, { cause: error }));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

/**
 * Holds a socket's writes until the current burst of deliveries is over, then sends them together: one
 * write to the kernel for many frames instead of one each.
 */
function corked(socket: { cork(): void; uncork(): void; writableCorked: number }): void {
  if (socket.writableCorked > 0) return;
  socket.cork();
  setImmediate(() => socket.uncork());
}

/** Frames whose bytes are all UTF-8 text travel as WebSocket text messages (what browser clients expect). */
function isText(bytes: Uint8Array): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}
