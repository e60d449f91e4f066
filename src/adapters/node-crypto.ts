/** The crypto provider of Node.js and Bun, on `node:crypto`: synchronous, so sealing adds no scheduling. */
import {
  type CryptoProvider,
  ED25519_PKCS8_PREFIX,
  ED25519_SPKI_PREFIX,
  type SealMode,
  type SenderKey,
  type SigningKey,
  type SyncCryptoProvider,
  TAG_BYTES,
  type VerifyKey,
  withPrefix,
  writeNonce,
} from "../security/crypto-provider.ts";
import { decodeBase64 } from "../security/options.ts";

/**
 * The part of `node:crypto` this provider uses, loaded through `process.getBuiltinModule` (Node 20.16
 * and later, Bun) rather than imported, as the UDP adapter loads `node:dgram`: no module of the library
 * imports a `node:` module, so it loads wherever Node is not running.
 */
interface KeyObject {
  export(options: { format: "jwk" }): { x?: string; d?: string };
}
interface Cipher {
  setAAD(aad: Uint8Array): void;
  update(data: Uint8Array): Uint8Array;
  final(): Uint8Array;
  getAuthTag(): Uint8Array;
  setAuthTag(tag: Uint8Array): void;
}
interface Hmac {
  update(data: Uint8Array): Hmac;
  digest(): Uint8Array;
}
interface NodeCrypto {
  createCipheriv(algorithm: "aes-256-gcm", key: Uint8Array, iv: Uint8Array): Cipher;
  createDecipheriv(algorithm: "aes-256-gcm", key: Uint8Array, iv: Uint8Array): Cipher;
  createHmac(algorithm: "sha256", key: Uint8Array): Hmac;
  createPrivateKey(options: { key: Uint8Array; format: "der"; type: "pkcs8" }): KeyObject;
  createPublicKey(options: { key: Uint8Array; format: "der"; type: "spki" } | KeyObject): KeyObject;
  generateKeyPairSync(type: "ed25519"): { privateKey: KeyObject; publicKey: KeyObject };
  sign(algorithm: null, data: Uint8Array, key: KeyObject): Uint8Array;
  verify(algorithm: null, data: Uint8Array, key: KeyObject, signature: Uint8Array): boolean;
  timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean;
}

interface NodeBuffer {
  Buffer: { allocUnsafeSlow(size: number): Uint8Array };
}

let loaded: NodeCrypto | undefined;
let loadedBuffer: NodeBuffer | undefined;

function builtin(id: string): unknown {
  const getBuiltinModule = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
  if (typeof getBuiltinModule !== "function") throw new Error("node:crypto needs Node 20.16 or later, or Bun (process.getBuiltinModule)");
  return getBuiltinModule(id);
}

// Loaded on first use: importing this module costs nothing where it is not used.
function nc(): NodeCrypto {
  return (loaded ??= builtin("node:crypto") as NodeCrypto);
}

function nb(): NodeBuffer {
  return (loadedBuffer ??= builtin("node:buffer") as NodeBuffer);
}

/** HKDF's extract step with an empty salt is HMAC keyed with 32 zero bytes (RFC 5869, 2.2). */
const ZERO_SALT = new Uint8Array(32);
const EXPAND_FIRST_BLOCK = Uint8Array.of(1);
/** HKDF-Extract of each secret: it depends on the secret alone, so a sender's key costs one HMAC. */
const extracted = new WeakMap<Uint8Array, Uint8Array>();

function hkdf32(secret: Uint8Array, info: Uint8Array): Uint8Array {
  let prk = extracted.get(secret);
  if (prk === undefined) {
    prk = nc().createHmac("sha256", ZERO_SALT).update(secret).digest();
    extracted.set(secret, prk);
  }
  // 32 bytes are one block of HKDF-Expand: T(1) = HMAC(PRK, info ‖ 0x01).
  return new Uint8Array(nc().createHmac("sha256", prk).update(info).update(EXPAND_FIRST_BLOCK).digest());
}

function rawKeyFromJwk(key: KeyObject, part: "x" | "d"): Uint8Array {
  return decodeBase64(key.export({ format: "jwk" })[part]!)!;
}

/**
 * A derived key, with what was made ahead for the next datagram of each of its two counter sequences
 * (odd counters for the group, even ones for single members): creating a cipher or an HMAC is most of
 * what sealing a small datagram costs here, and it can be done between turns, off the datagram's way.
 */
interface NodeSenderKey {
  readonly secret: Uint8Array;
  /** By counter parity: a cipher (or HMAC) for exactly one counter and one use, used once. */
  readonly ready: [Ready | undefined, Ready | undefined];
}

interface Ready {
  readonly counter: number;
  readonly use: "seal" | "open";
  readonly made: Cipher | Hmac;
}

/**
 * The nonce of the cipher being made: node:crypto copies it as the cipher is made, so one serves every
 * cipher (a new 12-byte array for each cost about a sixth of making the cipher). Making a cipher from a
 * KeyObject instead of the key's bytes was measured too, and is not cheaper on Node 20.
 */
const nonce = new Uint8Array(12);

function nodeKey(key: SenderKey): NodeSenderKey {
  return key as unknown as NodeSenderKey;
}

function make(key: NodeSenderKey, mode: SealMode, counter: number, use: "seal" | "open"): Cipher | Hmac {
  if (mode === "authenticate") return nc().createHmac("sha256", key.secret);
  writeNonce(nonce, counter);
  return use === "seal" ? nc().createCipheriv("aes-256-gcm", key.secret, nonce) : nc().createDecipheriv("aes-256-gcm", key.secret, nonce);
}

// What was made ahead for `counter` and `use`, taken (it serves once), or a new one. A cipher's nonce is
// fixed when it is made: one made for another counter is never used for this one.
function take(key: NodeSenderKey, mode: SealMode, counter: number, use: "seal" | "open"): Cipher | Hmac {
  const slot = counter % 2;
  const ready = key.ready[slot];
  if (ready !== undefined && ready.counter === counter && ready.use === use) {
    key.ready[slot] = undefined;
    return ready.made;
  }
  return make(key, mode, counter, use);
}

export const nodeCrypto: SyncCryptoProvider = {
  name: "node:crypto",
  synchronous: true,

  deriveKey(_mode, secret, info) {
    return { secret: hkdf32(secret, info), ready: [undefined, undefined] } satisfies NodeSenderKey as unknown as SenderKey;
  },

  prepare(key, mode, counter, use) {
    const prepared = nodeKey(key);
    const slot = counter % 2;
    const ready = prepared.ready[slot];
    if (ready !== undefined && ready.counter === counter && ready.use === use) return;
    prepared.ready[slot] = { counter, use, made: make(prepared, mode, counter, use) };
  },

  // A large sealed datagram (tens of kilobytes of bundled messages) is written whole, prefix, payload and
  // tag: zeroing its bytes first was a pass over the datagram for nothing. It is handed on as a plain
  // Uint8Array over the buffer's own memory (a Buffer's `slice` would share bytes, a Uint8Array's copies).
  allocate(length) {
    return new Uint8Array(nb().Buffer.allocUnsafeSlow(length).buffer, 0, length);
  },

  seal(key, mode, counter, aad, body, out, offset) {
    const made = take(nodeKey(key), mode, counter, "seal");
    if (mode === "authenticate") {
      out.set(body, offset);
      out.set((made as Hmac).update(aad).update(body).digest().subarray(0, TAG_BYTES), offset + body.length);
      return;
    }
    const cipher = made as Cipher;
    cipher.setAAD(aad);
    out.set(cipher.update(body), offset);
    // GCM is a stream mode: update returns every byte, final none.
    cipher.final();
    out.set(cipher.getAuthTag(), offset + body.length);
  },

  // The ciphertext stays in the buffer node:crypto made for it: no copy, and no second buffer of the
  // datagram's size for the collector to find.
  sealParts(key, mode, counter, aad, body) {
    const made = take(nodeKey(key), mode, counter, "seal");
    if (mode === "authenticate") return [body, plainView((made as Hmac).update(aad).update(body).digest(), TAG_BYTES)];
    const cipher = made as Cipher;
    cipher.setAAD(aad);
    const encrypted = cipher.update(body);
    cipher.final();
    return [plainView(encrypted, encrypted.byteLength), plainView(cipher.getAuthTag(), TAG_BYTES)];
  },

  open(key, mode, counter, aad, payload) {
    if (payload.length < TAG_BYTES) return undefined;
    const bodyLength = payload.length - TAG_BYTES;
    const body = payload.subarray(0, bodyLength);
    const tag = payload.subarray(bodyLength);
    const made = take(nodeKey(key), mode, counter, "open");
    if (mode === "authenticate") {
      const expected = (made as Hmac).update(aad).update(body).digest().subarray(0, TAG_BYTES);
      return nc().timingSafeEqual(expected, tag) ? body : undefined;
    }
    const decipher = made as Cipher;
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    const plain = decipher.update(body);
    try {
      decipher.final();
    } catch {
      return undefined;
    }
    return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength);
  },

  signingKey(privateKey) {
    return nc().createPrivateKey({ key: withPrefix(ED25519_PKCS8_PREFIX, privateKey), format: "der", type: "pkcs8" }) as unknown as SigningKey;
  },

  verifyKey(publicKey) {
    return nc().createPublicKey({ key: withPrefix(ED25519_SPKI_PREFIX, publicKey), format: "der", type: "spki" }) as unknown as VerifyKey;
  },

  sign(key, data) {
    return new Uint8Array(nc().sign(null, data, key as unknown as KeyObject));
  },

  verify(key, data, signature) {
    try {
      return nc().verify(null, data, key as unknown as KeyObject, signature);
    } catch {
      return false;
    }
  },

  publicKeyOf(privateKey) {
    return rawKeyFromJwk(nc().createPublicKey(this.signingKey(privateKey) as unknown as KeyObject), "x");
  },

  generateIdentity() {
    const { privateKey, publicKey } = nc().generateKeyPairSync("ed25519");
    return { privateKey: rawKeyFromJwk(privateKey, "d"), publicKey: rawKeyFromJwk(publicKey, "x") };
  },
};

/** The first `length` bytes of a Buffer as a plain Uint8Array (whose `slice` copies, as everywhere else). */
function plainView(bytes: Uint8Array, length: number): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, length);
}

/** The provider a channel uses by default on Node and Bun. */
export const cryptoProvider: CryptoProvider = nodeCrypto;
