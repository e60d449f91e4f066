/**
 * STOMP 1.2 frames: a streaming parser with limits, and the encoder.
 *
 * A frame is a command line, header lines (`name:value`, escaped with \\, \n, \r and \c except in
 * CONNECT and CONNECTED frames), a blank line, the body and a NUL. With `content-length` the body is
 * exactly that many bytes (NULs allowed); without it, the body ends at the first NUL. Lines end with LF
 * or CR LF; bare end-of-lines between frames are heart-beats.
 */
import { concatBytes } from "../wire/bytes.ts";

export interface StompFrame {
  readonly command: string;
  /** Headers in order; a repeated header keeps its first value (STOMP 1.2), later ones stay in `all`. */
  readonly headers: ReadonlyMap<string, string>;
  readonly body: Uint8Array;
}

export interface FrameLimits {
  /** Most bytes of one frame (command, headers and body). */
  readonly maxFrameBytes: number;
  /** Most header lines of one frame. */
  readonly maxHeaders: number;
  /** Most bytes of the command and header part. */
  readonly maxHeaderBytes: number;
}

/** A frame the parser refused: the gateway answers with an ERROR frame and closes. */
export class StompProtocolError extends Error {
  override readonly name = "StompProtocolError";
}

export const COMMANDS = new Set([
  "CONNECT",
  "STOMP",
  "SEND",
  "SUBSCRIBE",
  "UNSUBSCRIBE",
  "ACK",
  "NACK",
  "BEGIN",
  "COMMIT",
  "ABORT",
  "DISCONNECT",
]);

const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;
const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

/** Parses frames from a byte stream; feed it chunks as they come. */
export class FrameParser {
  #buffer: Uint8Array = new Uint8Array(0);
  /** The head of the frame being read, once its blank line has been seen. */
  #head: { command: string; headers: Map<string, string>; bodyStart: number; length: number | undefined } | undefined;

  constructor(private readonly limits: FrameLimits) {}

  /** Adds bytes; returns the frames they complete (heart-beats as the command ""). Throws StompProtocolError. */
  push(chunk: Uint8Array): StompFrame[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : concatBytes(this.#buffer, chunk);
    const frames: StompFrame[] = [];
    for (;;) {
      const frame = this.#next();
      if (frame === undefined) break;
      frames.push(frame);
    }
    return frames;
  }

  #next(): StompFrame | undefined {
    const buffer = this.#buffer;
    if (this.#head === undefined) {
      // Heart-beats (bare end-of-lines) between frames.
      if (buffer.length > 0 && (buffer[0] === LF || (buffer[0] === CR && buffer[1] === LF))) {
        this.#buffer = buffer.subarray(buffer[0] === LF ? 1 : 2);
        return { command: "", headers: new Map(), body: new Uint8Array(0) };
      }
      if (buffer.length > 0 && buffer[0] === CR && buffer.length < 2) return undefined;
      const end = headEnd(buffer);
      if (end === undefined) {
        if (buffer.length > this.limits.maxHeaderBytes) throw new StompProtocolError(`the frame's command and headers exceed ${this.limits.maxHeaderBytes} bytes`);
        return undefined;
      }
      if (end.at > this.limits.maxHeaderBytes) throw new StompProtocolError(`the frame's command and headers exceed ${this.limits.maxHeaderBytes} bytes`);
      this.#head = this.#parseHead(buffer.subarray(0, end.at), end.bodyStart);
    }
    const head = this.#head;
    let bodyEnd: number;
    if (head.length !== undefined) {
      if (buffer.length < head.bodyStart + head.length + 1) return undefined;
      bodyEnd = head.bodyStart + head.length;
      if (buffer[bodyEnd] !== NUL) throw new StompProtocolError(`the body is not followed by a NUL after content-length ${head.length}`);
    } else {
      const nul = buffer.indexOf(NUL, head.bodyStart);
      if (nul < 0) {
        if (buffer.length - head.bodyStart > this.limits.maxFrameBytes) throw new StompProtocolError(`the frame exceeds ${this.limits.maxFrameBytes} bytes`);
        return undefined;
      }
      bodyEnd = nul;
    }
    const body = buffer.slice(head.bodyStart, bodyEnd);
    this.#buffer = buffer.subarray(bodyEnd + 1);
    this.#head = undefined;
    return { command: head.command, headers: head.headers, body };
  }

  #parseHead(bytes: Uint8Array, bodyStart: number): { command: string; headers: Map<string, string>; bodyStart: number; length: number | undefined } {
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      throw new StompProtocolError("the command and headers are not UTF-8");
    }
    const lines = text.split("\n").map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line));
    const command = lines[0]!;
    if (!COMMANDS.has(command)) throw new StompProtocolError(`unknown command "${command.slice(0, 32)}"`);
    const escaped = command !== "CONNECT" && command !== "STOMP";
    const headerLines = lines.slice(1);
    if (headerLines.length > this.limits.maxHeaders) throw new StompProtocolError(`the frame has ${headerLines.length} headers (at most ${this.limits.maxHeaders})`);
    const headers = new Map<string, string>();
    for (const line of headerLines) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new StompProtocolError(`a header line has no name: "${line.slice(0, 64)}"`);
      const name = escaped ? unescape(line.slice(0, colon)) : line.slice(0, colon);
      const value = escaped ? unescape(line.slice(colon + 1)) : line.slice(colon + 1);
      if (!headers.has(name)) headers.set(name, value);
    }
    let length: number | undefined;
    const declared = headers.get("content-length");
    if (declared !== undefined) {
      if (!/^\d{1,10}$/.test(declared)) throw new StompProtocolError(`content-length "${declared.slice(0, 16)}" is not a number of bytes`);
      length = Number(declared);
      if (length > this.limits.maxFrameBytes) throw new StompProtocolError(`content-length ${length} exceeds the frame limit of ${this.limits.maxFrameBytes} bytes`);
    }
    return { command, headers, bodyStart, length };
  }
}

/** Where the blank line ending the headers is: the end of the head and where the body starts. */
function headEnd(buffer: Uint8Array): { at: number; bodyStart: number } | undefined {
  for (let i = buffer.indexOf(LF); i >= 0; i = buffer.indexOf(LF, i + 1)) {
    if (buffer[i + 1] === LF) return { at: buffer[i - 1] === CR ? i - 1 : i, bodyStart: i + 2 };
    if (buffer[i + 1] === CR && buffer[i + 2] === LF) return { at: buffer[i - 1] === CR ? i - 1 : i, bodyStart: i + 3 };
    if (i + 2 >= buffer.length) return undefined;
  }
  return undefined;
}

function unescape(text: string): string {
  if (!text.includes("\\")) return text;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (char !== "\\") {
      out += char;
      continue;
    }
    const next = text[++i];
    switch (next) {
      case "\\":
        out += "\\";
        break;
      case "n":
        out += "\n";
        break;
      case "r":
        out += "\r";
        break;
      case "c":
        out += ":";
        break;
      default:
        throw new StompProtocolError(`undefined escape sequence "\\${next ?? ""}" in a header`);
    }
  }
  return out;
}

const NEEDS_ESCAPE = /[\\\n\r:]/;

function escape(text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return text;
  return text.replace(/[\\\n\r:]/g, (char) => (char === "\\" ? "\\\\" : char === "\n" ? "\\n" : char === "\r" ? "\\r" : "\\c"));
}

/** Encodes a frame; a body gets its content-length. CONNECTED headers are not escaped (STOMP 1.2). */
export function encodeFrame(command: string, headers: Iterable<readonly [string, string]>, body?: Uint8Array): Uint8Array {
  const escaped = command !== "CONNECTED";
  let head = `${command}\n`;
  for (const [name, value] of headers) head += escaped ? `${escape(name)}:${escape(value)}\n` : `${name}:${value}\n`;
  if (body !== undefined) head += `content-length:${body.length}\n`;
  head += "\n";
  const headBytes = encoder.encode(head);
  const frame = new Uint8Array(headBytes.length + (body?.length ?? 0) + 1);
  frame.set(headBytes);
  if (body !== undefined) frame.set(body, headBytes.length);
  frame[frame.length - 1] = NUL;
  return frame;
}

