import { describe, expect, it } from "vitest";
import { nodeCrypto } from "../adapters/node-crypto.ts";
import { Channel } from "../channel/channel.ts";
import type { ChannelOptions } from "../channel/options.ts";
import { BlazeError } from "../errors.ts";
import { SimulatedNetwork } from "../transport/simulated-network.ts";
import { KeyRing } from "./keyring.ts";
import { decodeBase64, encodeBase64 } from "./options.ts";

const SECRET = new Uint8Array(32).map((_, i) => i);

function invalid(options: ChannelOptions): BlazeError {
  try {
    new Channel(options);
  } catch (error) {
    expect(error).toBeInstanceOf(BlazeError);
    return error as BlazeError;
  }
  throw new Error("the options were accepted");
}

describe("security options", () => {
  it("take secrets as bytes or base64 (standard or URL-safe), and the first key as primary", () => {
    for (const secret of [SECRET, encodeBase64(SECRET), encodeBase64(SECRET).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")]) {
      const channel = new Channel({ security: { keys: [{ id: 9, secret }, { id: 4, secret: SECRET }] } });
      expect(channel.security?.primaryKeyId).toBe(9);
      expect(channel.security?.keyIds).toEqual([9, 4]);
    }
    expect(new Channel().security).toBeUndefined();
  });

  it("fail fast, naming the field", () => {
    const cases: Array<[ChannelOptions["security"], string, RegExp]> = [
      [{ keys: [{ id: 1, secret: SECRET.subarray(1) }] }, "security.keys.0.secret", /32 bytes of key secret, got 31/],
      [{ keys: [{ id: 1, secret: "not base64!" }] }, "security.keys.0.secret", /bytes or base64/],
      [{ keys: [{ id: 0, secret: SECRET }] }, "security.keys.0.id", /./],
      [{ keys: [{ id: 2 ** 32, secret: SECRET }] }, "security.keys.0.id", /./],
      [{ keys: [] }, "security.keys", /at least one key/],
      [{ keys: [{ id: 1, secret: SECRET }, { id: 1, secret: SECRET }] }, "security.keys", /unique/],
      [{ keys: [{ id: 1, secret: SECRET }], primary: 2 }, "security.primary", /one of the keys/],
      [{ keys: [{ id: 1, secret: SECRET }], mode: "sign" as never }, "security.mode", /./],
      [{ keys: [{ id: 1, secret: SECRET }], trustedMembers: [SECRET] }, "security.identity", /insider mode/],
      [{ keys: [{ id: 1, secret: SECRET }], identity: { publicKey: SECRET, privateKey: "AAAA" } }, "security.identity.privateKey", /32 bytes/],
      [{ keys: [{ id: 1, secret: SECRET }], replayWindow: 10 }, "security.replayWindow", /./],
      [{ keys: [{ id: 1, secret: SECRET }], provider: {} as never }, "security.provider", /CryptoProvider/],
      [{ keys: [{ id: 1, secret: SECRET }], extra: 1 } as never, "security.extra", /./],
    ];
    for (const [security, path, message] of cases) {
      const error = invalid({ security });
      expect(error.code, path).toBe("INVALID_OPTION");
      expect(error.message, path).toContain(`"channel.${path}"`);
      expect(error.message, path).toMatch(message);
    }
  });

  it("refuse at init an identity whose public key is not its private key's", async () => {
    const net = new SimulatedNetwork({ seed: 1 });
    const mine = nodeCrypto.generateIdentity();
    const other = nodeCrypto.generateIdentity();
    const channel = new Channel({
      transport: net.transportFactory("h1"),
      clock: net.clock,
      security: { keys: [{ id: 1, secret: SECRET }], identity: { publicKey: other.publicKey, privateKey: mine.privateKey }, provider: nodeCrypto },
    });
    await expect(channel.init()).rejects.toMatchObject({ code: "INVALID_OPTION", path: ["security", "identity", "publicKey"] });
    const good = new Channel({ transport: net.transportFactory("h2"), clock: net.clock, security: { keys: [{ id: 1, secret: SECRET }], identity: mine, provider: nodeCrypto } });
    await good.init();
    // Insider mode: the member id is the public key's first 16 bytes.
    expect(good.id).toBe(Buffer.from(mine.publicKey.subarray(0, 16)).toString("hex"));
    await good.shutDown();
  });

  it("decode base64 strictly", () => {
    expect(decodeBase64("AQID")).toEqual(Uint8Array.of(1, 2, 3));
    expect(decodeBase64("AQI")).toEqual(Uint8Array.of(1, 2));
    expect(decodeBase64("A")).toBeUndefined();
    expect(decodeBase64("AQ*D")).toBeUndefined();
  });
});

describe("KeyRing", () => {
  it("adds, switches and retires keys, refusing what would break the ring", () => {
    const ring = new KeyRing([{ id: 1, secret: SECRET }], 1);
    ring.add({ id: 2, secret: encodeBase64(SECRET.map((b) => b ^ 1)) });
    ring.add({ id: 2, secret: SECRET.map((b) => b ^ 1) });
    expect(() => ring.add({ id: 2, secret: SECRET })).toThrow(/another secret/);
    expect(() => ring.add({ id: 3, secret: SECRET.subarray(2) })).toThrow(/32 bytes/);
    expect(() => ring.add({ id: -1, secret: SECRET })).toThrow(/key id/);
    expect(() => ring.use(7)).toThrow(/not in this member's keyring/);
    expect(() => ring.retire(1)).toThrow(/primary key/);
    const retired: number[] = [];
    ring.onRetired((id) => retired.push(id));
    ring.use(2);
    ring.retire(1);
    ring.retire(1);
    expect(ring.ids).toEqual([2]);
    expect(ring.primary).toBe(2);
    expect(retired).toEqual([1]);
  });
});
