/**
 * The cryptography a secured channel needs, behind one small interface, so that the core stays free of
 * any runtime's modules: `node:crypto` on Node and Bun (synchronous, fast), WebCrypto on Deno and
 * wherever `node:crypto` is missing (asynchronous). A channel picks its runtime's provider at run time
 * (src/adapters/runtime.ts); `security.provider` replaces it.
 *
 * Keys handed out by a provider are opaque to the rest of activeblaze: only the provider that made
 * them uses them.
 */

/** How datagrams are sealed: AES-256-GCM ("encrypt") or HMAC-SHA-256 ("authenticate", readable). */
export type SealMode = "encrypt" | "authenticate";

declare const providerKey: unique symbol;
/** A per-sender key prepared for one seal mode. */
export type SenderKey = { readonly [providerKey]: "sender" };
/** An Ed25519 private key prepared for signing. */
export type SigningKey = { readonly [providerKey]: "signing" };
/** An Ed25519 public key prepared for verifying. */
export type VerifyKey = { readonly [providerKey]: "verify" };

/** Bytes of the tag that ends every sealed payload (AES-GCM's, or HMAC-SHA-256 truncated). */
export const TAG_BYTES = 16;
/** Bytes of an Ed25519 signature. */
export const SIGNATURE_BYTES = 64;
/** Bytes of a key's secret, and of Ed25519 private (seed) and public keys. */
export const KEY_BYTES = 32;

/** An Ed25519 key pair, raw: the 32-byte private seed and the 32-byte public key. */
export interface IdentityKeys {
  readonly publicKey: Uint8Array;
  readonly privateKey: Uint8Array;
}

/** What an operation returns: the value itself from a synchronous provider, a promise of it otherwise. */
export type CryptoResult<Synchronous extends boolean, T> = Synchronous extends true ? T : Promise<T>;

/** The operations of a provider; `synchronous` says whether they return values or promises. */
export interface CryptoOperations<Synchronous extends boolean> {
  /** A readable name ("node:crypto", "WebCrypto"). */
  readonly name: string;
  readonly synchronous: Synchronous;
  /** HKDF-SHA-256 of `secret` (empty salt, `info`, 32 bytes), prepared as a key for `mode`. */
  deriveKey(mode: SealMode, secret: Uint8Array, info: Uint8Array): CryptoResult<Synchronous, SenderKey>;
  /**
   * Writes the sealed payload of `body` into `out` at `offset` (room for the body and the tag):
   * AES-256-GCM ciphertext then tag (nonce: 4 zero bytes and `counter` as 8 bytes big-endian), or
   * `body` then the first 16 bytes of HMAC-SHA-256(aad ‖ body).
   */
  seal(key: SenderKey, mode: SealMode, counter: number, aad: Uint8Array, body: Uint8Array, out: Uint8Array, offset: number): CryptoResult<Synchronous, void>;
  /**
   * Optional: makes ahead of time what sealing (or opening) the datagram with `counter` under `key` will
   * need, so that the seal or open itself does less when it comes. A channel calls it once what a turn
   * had to send is sent: for its own next counters, and for the next counter of each sender just heard.
   */
  prepare?(key: SenderKey, mode: SealMode, counter: number, use: "seal" | "open"): void;
  /**
   * Optional: a new buffer of `length` bytes for a sealed datagram, whose bytes need not be zero (the
   * sender writes every one of them before the datagram leaves). A runtime that can skip zeroing
   * saves that pass over a large datagram; without it, a sender allocates zeroed bytes.
   */
  allocate?(length: number): Uint8Array;
  /**
   * Optional, synchronous providers: the sealed payload of `body` as `seal` writes it, in two parts
   * (AES-256-GCM ciphertext, or `body` itself when authenticating; then the tag), each in a buffer of
   * its own: for a sender that hands the parts to the network as they are rather than joining them.
   */
  sealParts?(key: SenderKey, mode: SealMode, counter: number, aad: Uint8Array, body: Uint8Array): CryptoResult<Synchronous, readonly [Uint8Array, Uint8Array]>;
  /** The body of a sealed payload, or undefined when it does not authenticate. Never throws for bad input. */
  open(key: SenderKey, mode: SealMode, counter: number, aad: Uint8Array, payload: Uint8Array): CryptoResult<Synchronous, Uint8Array | undefined>;
  signingKey(privateKey: Uint8Array): CryptoResult<Synchronous, SigningKey>;
  verifyKey(publicKey: Uint8Array): CryptoResult<Synchronous, VerifyKey>;
  sign(key: SigningKey, data: Uint8Array): CryptoResult<Synchronous, Uint8Array>;
  /** True when `signature` is `key`'s over `data`. Never throws for bad input. */
  verify(key: VerifyKey, data: Uint8Array, signature: Uint8Array): CryptoResult<Synchronous, boolean>;
  /** The public key of an Ed25519 private key. */
  publicKeyOf(privateKey: Uint8Array): CryptoResult<Synchronous, Uint8Array>;
  /** A new Ed25519 key pair. */
  generateIdentity(): CryptoResult<Synchronous, IdentityKeys>;
}

/** A provider whose operations return at once (node:crypto). */
export type SyncCryptoProvider = CryptoOperations<true>;
/** A provider whose operations return promises (WebCrypto). */
export type AsyncCryptoProvider = CryptoOperations<false>;

export type CryptoProvider = SyncCryptoProvider | AsyncCryptoProvider;

/** True for a value shaped like a provider (for option checks). */
export function isCryptoProvider(value: unknown): value is CryptoProvider {
  const candidate = value as Partial<CryptoProvider> | undefined;
  return typeof candidate?.synchronous === "boolean" && typeof candidate.seal === "function" && typeof candidate.open === "function";
}

/** The AES-GCM nonce of a counter: 4 zero bytes, then the counter as 8 bytes big-endian. */
export function nonceOf(counter: number): Uint8Array {
  return writeNonce(new Uint8Array(12), counter);
}

/** Writes the nonce of `counter` into `nonce` (12 bytes, its first 4 left as they are: zero) and returns it. */
export function writeNonce(nonce: Uint8Array, counter: number): Uint8Array {
  const high = Math.floor(counter / 2 ** 32);
  const low = counter >>> 0;
  nonce[4] = high >>> 24;
  nonce[5] = (high >>> 16) & 0xff;
  nonce[6] = (high >>> 8) & 0xff;
  nonce[7] = high & 0xff;
  nonce[8] = low >>> 24;
  nonce[9] = (low >>> 16) & 0xff;
  nonce[10] = (low >>> 8) & 0xff;
  nonce[11] = low & 0xff;
  return nonce;
}

/** Compares two byte ranges in time that does not depend on where they differ. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!;
  return difference === 0;
}

/** PKCS #8 and SPKI prefixes of raw Ed25519 keys (RFC 8410): how both APIs import raw keys. */
export const ED25519_PKCS8_PREFIX = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20);
export const ED25519_SPKI_PREFIX = Uint8Array.of(0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00);

export function withPrefix(prefix: Uint8Array, key: Uint8Array): Uint8Array {
  const der = new Uint8Array(prefix.length + key.length);
  der.set(prefix);
  der.set(key, prefix.length);
  return der;
}
