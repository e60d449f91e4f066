import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { concatBytes } from "../wire/bytes.ts";

/**
 * The server side of RFC 6455 WebSockets, enough for STOMP: the upgrade handshake with subprotocol
 * choice, masked client frames (text or binary, fragmented or not), ping/pong and the close handshake.
 * Written here because STOMP needs only this much of it; limits bound what one client can make the
 * member hold.
 */

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

/** What a WebSocket connection tells its user. */
export interface WebSocketHandlers {
  /** A complete message's payload (text or binary). */
  message(payload: Uint8Array): void;
  /** The connection closed (either side), or failed. */
  closed(reason: string): void;
}

export class WebSocketConnection {
  #buffer: Uint8Array = new Uint8Array(0);
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  #closed = false;
  #closing = false;

  constructor(
    readonly socket: Duplex,
    readonly protocol: string | undefined,
    private readonly handlers: WebSocketHandlers,
    private readonly maxMessageBytes: number,
  ) {
    socket.on("data", (chunk: Buffer) => this.#receive(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    socket.on("close", () => this.#finish("the connection closed"));
    socket.on("error", (error: Error) => this.#finish(error.message));
  }

  /** Sends a text frame (STOMP frames are text unless their body is binary: binary frames then). Returns false when the socket buffers. */
  send(payload: Uint8Array, binary: boolean): boolean {
    if (this.#closed || this.#closing) return false;
    return this.socket.write(frame(binary ? OP_BINARY : OP_TEXT, payload));
  }

  /** Starts the close handshake (code 1000 by default), then ends the socket. */
  close(code = 1000, reason = ""): void {
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    const text = new TextEncoder().encode(reason.slice(0, 120));
    const payload = new Uint8Array(2 + text.length);
    payload[0] = code >> 8;
    payload[1] = code & 0xff;
    payload.set(text, 2);
    this.socket.write(frame(OP_CLOSE, payload));
    this.socket.end();
    // A peer that never answers the close is cut off.
    setTimeout(() => this.socket.destroy(), 2_000).unref?.();
  }

  get bufferedBytes(): number {
    return (this.socket as Duplex & { writableLength: number }).writableLength;
  }

  #finish(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.handlers.closed(reason);
  }

  #fail(code: number, reason: string): void {
    this.close(code, reason);
    this.#finish(reason);
  }

  #receive(chunk: Uint8Array): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : concatBytes(this.#buffer, chunk);
    while (!this.#closed) {
      const buffer = this.#buffer;
      if (buffer.length < 2) return;
      const fin = (buffer[0]! & 0x80) !== 0;
      const rsv = buffer[0]! & 0x70;
      const opcode = buffer[0]! & 0x0f;
      const masked = (buffer[1]! & 0x80) !== 0;
      let length = buffer[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = (buffer[2]! << 8) | buffer[3]!;
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        const high = (buffer[2]! << 24) | (buffer[3]! << 16) | (buffer[4]! << 8) | buffer[5]!;
        if (high !== 0) return this.#fail(1009, "message too big");
        length = ((buffer[6]! << 24) >>> 0) + ((buffer[7]! << 16) | (buffer[8]! << 8) | buffer[9]!);
        offset = 10;
      }
      if (rsv !== 0) return this.#fail(1002, "reserved bits set (no extension was agreed)");
      if (!masked) return this.#fail(1002, "client frames must be masked");
      if (length > this.maxMessageBytes) return this.#fail(1009, `a frame of ${length} bytes exceeds ${this.maxMessageBytes}`);
      if (buffer.length < offset + 4 + length) return;
      const mask = buffer.subarray(offset, offset + 4);
      const payload = buffer.slice(offset + 4, offset + 4 + length);
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      this.#buffer = buffer.subarray(offset + 4 + length);
      this.#frame(fin, opcode, payload);
    }
  }

  #frame(fin: boolean, opcode: number, payload: Uint8Array): void {
    switch (opcode) {
      case OP_PING:
        if (payload.length > 125 || !fin) return this.#fail(1002, "bad ping");
        this.socket.write(frame(OP_PONG, payload));
        return;
      case OP_PONG:
        return;
      case OP_CLOSE:
        if (!this.#closing) {
          this.#closing = true;
          this.socket.write(frame(OP_CLOSE, payload.subarray(0, 2)));
          this.socket.end();
        }
        this.#finish("the client closed the WebSocket");
        return;
      case OP_TEXT:
      case OP_BINARY:
        if (this.#fragments.length > 0) return this.#fail(1002, "a new message started inside a fragmented one");
        if (fin) {
          this.handlers.message(payload);
          return;
        }
        this.#fragments.push(payload);
        this.#fragmentBytes = payload.length;
        return;
      case OP_CONTINUATION: {
        if (this.#fragments.length === 0) return this.#fail(1002, "a continuation frame with no message to continue");
        this.#fragmentBytes += payload.length;
        if (this.#fragmentBytes > this.maxMessageBytes) return this.#fail(1009, `a message exceeds ${this.maxMessageBytes} bytes`);
        this.#fragments.push(payload);
        if (!fin) return;
        const whole = new Uint8Array(this.#fragmentBytes);
        let at = 0;
        for (const part of this.#fragments.splice(0)) {
          whole.set(part, at);
          at += part.length;
        }
        this.#fragmentBytes = 0;
        this.handlers.message(whole);
        return;
      }
      default:
        this.#fail(1002, `unknown opcode ${opcode}`);
    }
  }
}

/**
 * Answers an HTTP upgrade request: picks the first of `protocols` the client offers (none offered: no
 * subprotocol), writes the 101 response and returns the connection; refuses others with 400 / 426.
 */
export function acceptUpgrade(
  request: IncomingMessage,
  socket: Duplex,
  protocols: readonly string[],
  handlers: WebSocketHandlers,
  maxMessageBytes: number,
): WebSocketConnection | undefined {
  const key = request.headers["sec-websocket-key"];
  const upgrade = request.headers.upgrade;
  if (typeof upgrade !== "string" || upgrade.toLowerCase() !== "websocket" || typeof key !== "string" || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    return undefined;
  }
  if (request.headers["sec-websocket-version"] !== "13") {
    socket.end("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n");
    return undefined;
  }
  const offered = String(request.headers["sec-websocket-protocol"] ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  const protocol = protocols.find((p) => offered.includes(p));
  if (offered.length > 0 && protocol === undefined) {
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    return undefined;
  }
  const accept = createHash("sha1").update(key + GUID).digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n` +
      (protocol === undefined ? "" : `Sec-WebSocket-Protocol: ${protocol}\r\n`) +
      "\r\n",
  );
  return new WebSocketConnection(socket, protocol, handlers, maxMessageBytes);
}

function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const headerBytes = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const out = new Uint8Array(headerBytes + length);
  out[0] = 0x80 | opcode;
  if (length < 126) out[1] = length;
  else if (length < 65_536) {
    out[1] = 126;
    out[2] = length >> 8;
    out[3] = length & 0xff;
  } else {
    out[1] = 127;
    const high = Math.floor(length / 2 ** 32);
    out[2] = (high >>> 24) & 0xff;
    out[3] = (high >>> 16) & 0xff;
    out[4] = (high >>> 8) & 0xff;
    out[5] = high & 0xff;
    out[6] = (length >>> 24) & 0xff;
    out[7] = (length >>> 16) & 0xff;
    out[8] = (length >>> 8) & 0xff;
    out[9] = length & 0xff;
  }
  out.set(payload, headerBytes);
  return out;
}

