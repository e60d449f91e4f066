import { describe, expect, it } from "vitest";
import { SeededRandom } from "../transport/seeded-random.ts";
import { encodeFrame, FrameParser, StompProtocolError } from "./frame.ts";

const LIMITS = { maxFrameBytes: 1024, maxHeaders: 8, maxHeaderBytes: 512 };
const bytes = (text: string) => new TextEncoder().encode(text);

describe("STOMP frames", () => {
  it("parses frames split anywhere, heart-beats between them, CR LF line ends, escapes and content-length bodies with NULs", () => {
    const stream = bytes("\n\r\nSEND\r\ndestination:/queue/a\\cb\r\nx-note:line\\none\\\\\r\ncontent-length:3\r\n\r\n\0\0\0\0\nSUBSCRIBE\nid:1\ndestination:/topic/t\n\n\0");
    for (let cut = 0; cut <= stream.length; cut++) {
      const parser = new FrameParser(LIMITS);
      const frames = [...parser.push(stream.subarray(0, cut)), ...parser.push(stream.subarray(cut))].filter((f) => f.command !== "");
      expect(frames.map((f) => f.command)).toEqual(["SEND", "SUBSCRIBE"]);
      expect(frames[0]!.headers.get("destination")).toBe("/queue/a:b");
      expect(frames[0]!.headers.get("x-note")).toBe("line\none\\");
      expect(frames[0]!.body).toEqual(new Uint8Array(3));
    }
  });

  it("keeps the first of repeated headers, and leaves CONNECT headers unescaped", () => {
    const [frame] = new FrameParser(LIMITS).push(bytes("SEND\ndestination:/queue/a\ndestination:/queue/b\n\nx\0"));
    expect(frame!.headers.get("destination")).toBe("/queue/a");
    const [connect] = new FrameParser(LIMITS).push(bytes("CONNECT\nlogin:a\\b\n\n\0"));
    expect(connect!.headers.get("login")).toBe("a\\b");
  });

  it("encodes with escapes and a content-length, which parses back", () => {
    const encoded = encodeFrame("SEND", [["destination", "/queue/a:b"], ["note", "x\ny"]], new Uint8Array([0, 1, 0]));
    const [frame] = new FrameParser(LIMITS).push(encoded);
    expect(frame!.headers.get("destination")).toBe("/queue/a:b");
    expect(frame!.headers.get("note")).toBe("x\ny");
    expect(frame!.body).toEqual(new Uint8Array([0, 1, 0]));
  });

  it("refuses unknown commands, bad escapes, headers without a name, bad lengths and frames past the limits", () => {
    const refuse = (text: string | Uint8Array, why: RegExp) =>
      expect(() => new FrameParser(LIMITS).push(typeof text === "string" ? bytes(text) : text)).toThrow(why);
    refuse("HELLO\n\n\0", /unknown command/);
    refuse("SEND\na:\\t\n\n\0", /undefined escape/);
    refuse("SEND\n:x\n\n\0", /no name/);
    refuse("SEND\ncontent-length:abc\n\n\0", /not a number/);
    refuse("SEND\ncontent-length:2000\n\n", /exceeds the frame limit/);
    refuse("SEND\ncontent-length:1\n\nxy\0", /not followed by a NUL/);
    refuse(`SEND\n${Array.from({ length: 9 }, (_, i) => `h${i}:v`).join("\n")}\n\n\0`, /at most 8/);
    refuse(`SEND\nh:${"v".repeat(600)}\n\n\0`, /exceed 512 bytes/);
    refuse(`SEND\n\n${"x".repeat(2000)}`, /exceeds 1024 bytes/);
    refuse(Uint8Array.from([0x53, 0x45, 0x4e, 0x44, 0x0a, 0x61, 0x3a, 0xff, 0x0a, 0x0a, 0x00]), /not UTF-8/);
  });

  it("never throws anything but a protocol error on random or mutated input (2,000 seeded cases)", () => {
    const valid = bytes("SEND\ndestination:/queue/a\ncontent-length:2\n\nhi\0SUBSCRIBE\nid:1\ndestination:/topic/x\nack:client\n\n\0");
    const random = new SeededRandom(13);
    for (let n = 0; n < 2_000; n++) {
      const input = n % 2 === 0 ? valid.slice() : random.fill(new Uint8Array(random.nextInt(200)));
      if (n % 2 === 0) for (let k = 0; k < 1 + random.nextInt(4); k++) input[random.nextInt(input.length)] = random.nextInt(256);
      const parser = new FrameParser(LIMITS);
      try {
        for (let at = 0; at < input.length; ) {
          const length = 1 + random.nextInt(16);
          parser.push(input.subarray(at, at + length));
          at += length;
        }
      } catch (error) {
        expect(error).toBeInstanceOf(StompProtocolError);
      }
    }
  });
});
