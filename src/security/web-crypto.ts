/**
 * The crypto provider on WebCrypto (`crypto.subtle`), for Deno and wherever `node:crypto` is missing.
 * Every operation is asynchronous; a secured channel keeps datagrams in order around it.
 */
import { BlazeError } from "../errors.ts";
import { web } from "../web.ts";
import {
  type AsyncCryptoProvider,
  type CryptoProvider,
  ED25519_PKCS8_PREFIX,
  ED25519_SPKI_PREFIX,
  equalBytes,
  nonceOf,
  type SenderKey,
  type SigningKey,
  TAG_BYTES,
  type VerifyKey,
  withPrefix,
} from "./crypto-provider.ts";

/** The part of WebCrypto used here (the core compiles without any runtime's types). */
interface Subtle {
  importKey(format: "raw" | "pkcs8" | "spki", data: Uint8Array, algorithm: unknown, extractable: boolean, usages: string[]): Promise<unknown>;
  exportKey(format: "jwk", key: unknown): Promise<{ x?: string; d?: string }>;
  deriveBits(algorithm: unknown, key: unknown, length: number): Promise<ArrayBuffer>;
  encrypt(algorithm: unknown, key: unknown, data: Uint8Array): Promise<ArrayBuffer>;
  decrypt(algorithm: unknown, key: unknown, data: Uint8Array): Promise<ArrayBuffer>;
  sign(algorithm: unknown, key: unknown, data: Uint8Array): Promise<ArrayBuffer>;
  verify(algorithm: unknown, key: unknown, signature: Uint8Array, data: Uint8Array): Promise<boolean>;
  generateKey(algorithm: unknown, extractable: boolean, usages: string[]): Promise<{ publicKey: unknown; privateKey: unknown }>;
}

function subtle(): Subtle {
  const found = (globalThis as { crypto?: { subtle?: Subtle } }).crypto?.subtle;
  if (found === undefined) throw new BlazeError("WRONG_RUNTIME", "WebCrypto (crypto.subtle) is not available in this runtime");
  return found;
}

const NO_SALT = new Uint8Array(0);
const ED25519 = { name: "Ed25519" };

function base64UrlToBytes(text: string): Uint8Array {
  const binary = web.atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

interface WebSenderKey {
  readonly key: unknown;
}

async function hmacTag(key: SenderKey, aad: Uint8Array, body: Uint8Array): Promise<Uint8Array> {
  const data = new Uint8Array(aad.length + body.length);
  data.set(aad);
  data.set(body, aad.length);
  return new Uint8Array(await subtle().sign("HMAC", (key as unknown as WebSenderKey).key, data), 0, TAG_BYTES);
}

export const webCrypto: AsyncCryptoProvider = {
  name: "WebCrypto",
  synchronous: false,

  async deriveKey(mode, secret, info) {
    const s = subtle();
    const master = await s.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
    const bits = new Uint8Array(await s.deriveBits({ name: "HKDF", hash: "SHA-256", salt: NO_SALT, info }, master, 256));
    const key =
      mode === "encrypt"
        ? await s.importKey("raw", bits, { name: "AES-GCM" }, false, ["encrypt", "decrypt"])
        : await s.importKey("raw", bits, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return { key } satisfies WebSenderKey as unknown as SenderKey;
  },

  async seal(key, mode, counter, aad, body, out, offset) {
    if (mode === "authenticate") {
      const tag = await hmacTag(key, aad, body);
      out.set(body, offset);
      out.set(tag, offset + body.length);
      return;
    }
    const algorithm = { name: "AES-GCM", iv: nonceOf(counter), additionalData: aad, tagLength: TAG_BYTES * 8 };
    out.set(new Uint8Array(await subtle().encrypt(algorithm, (key as unknown as WebSenderKey).key, body)), offset);
  },

  async open(key, mode, counter, aad, payload) {
    if (payload.length < TAG_BYTES) return undefined;
    const bodyLength = payload.length - TAG_BYTES;
    if (mode === "authenticate") {
      const body = payload.subarray(0, bodyLength);
      return equalBytes(await hmacTag(key, aad, body), payload.subarray(bodyLength)) ? body : undefined;
    }
    const algorithm = { name: "AES-GCM", iv: nonceOf(counter), additionalData: aad, tagLength: TAG_BYTES * 8 };
    try {
      return new Uint8Array(await subtle().decrypt(algorithm, (key as unknown as WebSenderKey).key, payload));
    } catch {
      return undefined;
    }
  },

  async signingKey(privateKey) {
    return (await subtle().importKey("pkcs8", withPrefix(ED25519_PKCS8_PREFIX, privateKey), ED25519, false, ["sign"])) as SigningKey;
  },

  async verifyKey(publicKey) {
    return (await subtle().importKey("spki", withPrefix(ED25519_SPKI_PREFIX, publicKey), ED25519, false, ["verify"])) as VerifyKey;
  },

  async sign(key, data) {
    return new Uint8Array(await subtle().sign(ED25519, key, data));
  },

  async verify(key, data, signature) {
    try {
      return await subtle().verify(ED25519, key, signature, data);
    } catch {
      return false;
    }
  },

  async publicKeyOf(privateKey) {
    const key = await subtle().importKey("pkcs8", withPrefix(ED25519_PKCS8_PREFIX, privateKey), ED25519, true, ["sign"]);
    return base64UrlToBytes((await subtle().exportKey("jwk", key)).x!);
  },

  async generateIdentity() {
    const pair = await subtle().generateKey(ED25519, true, ["sign", "verify"]);
    const jwk = await subtle().exportKey("jwk", pair.privateKey);
    return { privateKey: base64UrlToBytes(jwk.d!), publicKey: base64UrlToBytes(jwk.x!) };
  },
};

/** The provider a channel uses by default on Deno and in runtimes without `node:crypto`. */
export const cryptoProvider: CryptoProvider = webCrypto;
