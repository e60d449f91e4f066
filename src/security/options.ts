import * as z from "zod";
import { web } from "../web.ts";
import { type CryptoProvider, isCryptoProvider, KEY_BYTES } from "./crypto-provider.ts";

/** Defaults of {@link SecurityOptions}; the README's table repeats them. */
export const DEFAULT_SECURITY_OPTIONS = {
  mode: "encrypt",
  replayWindow: 4_096,
  maxSenders: 4_096,
  incarnationSkewMs: 300_000,
  cryptoQueue: 4_096,
} as const;

/** Decodes standard or URL-safe base64 (padding optional); undefined when it is not base64. */
export function decodeBase64(text: string): Uint8Array | undefined {
  const standard = text.trim().replace(/-/g, "+").replace(/_/g, "/");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(standard) || standard.replace(/=+$/, "").length % 4 === 1) return undefined;
  const padded = standard.replace(/=+$/, "").padEnd(Math.ceil(standard.replace(/=+$/, "").length / 4) * 4, "=");
  const binary = web.atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Standard base64 with padding. */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!);
  return web.btoa(binary);
}

/** 32 bytes, given as bytes or as base64 text. */
const key32 = (what: string) =>
  z
    .union([z.custom<Uint8Array>((value) => value instanceof Uint8Array, `expected ${what} as bytes or base64 text`), z.string()])
    .transform((value, context) => {
      const bytes = typeof value === "string" ? decodeBase64(value) : value.slice();
      if (bytes === undefined) {
        context.addIssue({ code: "custom", message: `expected ${what} as bytes or base64 text` });
        return z.NEVER;
      }
      if (bytes.length !== KEY_BYTES) {
        context.addIssue({ code: "custom", message: `expected ${KEY_BYTES} bytes of ${what}, got ${bytes.length}` });
        return z.NEVER;
      }
      return bytes;
    });

const keyId = z.number().int().min(1).max(0xffff_ffff);

/** The zod schema of {@link SecurityOptions}. */
export const securityOptionsSchema: z.ZodType<ResolvedSecurityOptions, SecurityOptions> = z
  .strictObject({
    keys: z
      .array(z.strictObject({ id: keyId, secret: key32("key secret") }))
      .min(1, "expected at least one key")
      .refine((keys) => new Set(keys.map((key) => key.id)).size === keys.length, "key ids must be unique"),
    primary: keyId.optional(),
    mode: z.enum(["encrypt", "authenticate"]).default(DEFAULT_SECURITY_OPTIONS.mode),
    replayWindow: z.number().int().min(64).max(65_536).default(DEFAULT_SECURITY_OPTIONS.replayWindow),
    maxSenders: z.number().int().min(16).max(1 << 20).default(DEFAULT_SECURITY_OPTIONS.maxSenders),
    incarnationSkewMs: z.number().int().min(0).default(DEFAULT_SECURITY_OPTIONS.incarnationSkewMs),
    cryptoQueue: z.number().int().min(16).max(1 << 20).default(DEFAULT_SECURITY_OPTIONS.cryptoQueue),
    identity: z.strictObject({ publicKey: key32("Ed25519 public key"), privateKey: key32("Ed25519 private key") }).optional(),
    trustedMembers: z.array(key32("Ed25519 public key")).min(1).optional(),
    provider: z.custom<CryptoProvider>(isCryptoProvider, "expected a CryptoProvider").optional(),
  })
  .refine((options) => options.primary === undefined || options.keys.some((key) => key.id === options.primary), {
    message: "must be the id of one of the keys",
    path: ["primary"],
  })
  .refine((options) => options.trustedMembers === undefined || options.identity !== undefined, {
    message: "trusted members need an identity of this member's own (insider mode)",
    path: ["identity"],
  })
  .transform(({ primary, ...rest }) => ({ ...rest, primary: primary ?? rest.keys[0]!.id }));

/**
 * Authenticated (and by default encrypted) datagrams: `security` of {@link index!ChannelOptions}. Every member
 * of the cluster needs the same keys; a datagram that does not open under one of them is refused and
 * counted, and creates no state.
 *
 * | option | unit | default | meaning |
 * | --- | --- | --- | --- |
 * | `keys` | | required | the keyring: `[{ id, secret }]`, ids 1 to 2^32 − 1, secrets of 32 bytes (bytes or base64; `blaze keygen` makes one) |
 * | `primary` | key id | the first key's | the key this member seals with; every key of the ring opens |
 * | `mode` | | `"encrypt"` | `"encrypt"`: AES-256-GCM; `"authenticate"`: HMAC-SHA-256, datagrams stay readable |
 * | `replayWindow` | datagrams | 4096 | how far back, per sender and sequence, a late datagram is still accepted (once) |
 * | `maxSenders` | senders | 4096 | authenticated senders tracked at most (their replay windows); the longest silent is forgotten |
 * | `incarnationSkewMs` | ms | 300000 | a sender's incarnation may be at most this far ahead of this member's wall clock |
 * | `cryptoQueue` | datagrams | 4096 | with an asynchronous provider (WebCrypto): datagrams being opened at once, at most; past it they are dropped (counted) |
 * | `identity` | | none | insider mode: this member's Ed25519 key pair `{ publicKey, privateKey }` (`blaze keygen --identity`); its member id is the public key's first 16 bytes, and every datagram it sends is signed |
 * | `trustedMembers` | | anyone with the keys | insider mode: the public keys allowed to speak |
 * | `provider` | | the runtime's | the crypto provider: `node:crypto` on Node and Bun, WebCrypto elsewhere |
 */
export interface SecurityOptions {
  readonly keys: ReadonlyArray<{ readonly id: number; readonly secret: Uint8Array | string }>;
  readonly primary?: number | undefined;
  readonly mode?: "encrypt" | "authenticate" | undefined;
  readonly replayWindow?: number | undefined;
  readonly maxSenders?: number | undefined;
  readonly incarnationSkewMs?: number | undefined;
  readonly cryptoQueue?: number | undefined;
  readonly identity?: { readonly publicKey: Uint8Array | string; readonly privateKey: Uint8Array | string } | undefined;
  readonly trustedMembers?: ReadonlyArray<Uint8Array | string> | undefined;
  readonly provider?: CryptoProvider | undefined;
}

/** {@link SecurityOptions} checked, keys as bytes, the primary key chosen. */
export interface ResolvedSecurityOptions {
  readonly keys: ReadonlyArray<{ readonly id: number; readonly secret: Uint8Array }>;
  readonly primary: number;
  readonly mode: "encrypt" | "authenticate";
  readonly replayWindow: number;
  readonly maxSenders: number;
  readonly incarnationSkewMs: number;
  readonly cryptoQueue: number;
  readonly identity?: { readonly publicKey: Uint8Array; readonly privateKey: Uint8Array } | undefined;
  readonly trustedMembers?: readonly Uint8Array[] | undefined;
  readonly provider?: CryptoProvider | undefined;
}
