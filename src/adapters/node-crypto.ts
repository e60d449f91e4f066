/** The crypto provider of Node.js and Bun, on `node:crypto`: synchronous, so sealing adds no scheduling. */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  timingSafeEqual,
  verify,
} from "node:crypto";
import {
  type CryptoProvider,
  ED25519_PKCS8_PREFIX,
  ED25519_SPKI_PREFIX,
  nonceOf,
  type SenderKey,
  type SigningKey,
  type SyncCryptoProvider,
  TAG_BYTES,
  type VerifyKey,
  withPrefix,
} from "../security/crypto-provider.ts";

/** HKDF's extract step with an empty salt is HMAC keyed with 32 zero bytes (RFC 5869, 2.2). */
const ZERO_SALT = new Uint8Array(32);
const EXPAND_FIRST_BLOCK = Uint8Array.of(1);
/** HKDF-Extract of each secret: it depends on the secret alone, so a sender's key costs one HMAC. */
const extracted = new WeakMap<Uint8Array, Buffer>();

function hkdf32(secret: Uint8Array, info: Uint8Array): Uint8Array {
  let prk = extracted.get(secret);
  if (prk === undefined) {
    prk = createHmac("sha256", ZERO_SALT).update(secret).digest();
    extracted.set(secret, prk);
  }
  // 32 bytes are one block of HKDF-Expand: T(1) = HMAC(PRK, info ‖ 0x01).
  return new Uint8Array(createHmac("sha256", prk).update(info).update(EXPAND_FIRST_BLOCK).digest());
}

function rawKeyFromJwk(key: KeyObject, part: "x" | "d"): Uint8Array {
  const jwk = key.export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk[part]!, "base64url"));
}

function hmacTag(key: SenderKey, aad: Uint8Array, body: Uint8Array): Uint8Array {
  return createHmac("sha256", key as unknown as Uint8Array).update(aad).update(body).digest().subarray(0, TAG_BYTES);
}

export const nodeCrypto: SyncCryptoProvider = {
  name: "node:crypto",
  synchronous: true,

  deriveKey(_mode, secret, info) {
    return hkdf32(secret, info) as unknown as SenderKey;
  },

  seal(key, mode, counter, aad, body, out, offset) {
    if (mode === "authenticate") {
      out.set(body, offset);
      out.set(hmacTag(key, aad, body), offset + body.length);
      return;
    }
    const cipher = createCipheriv("aes-256-gcm", key as unknown as Uint8Array, nonceOf(counter));
    cipher.setAAD(aad);
    out.set(cipher.update(body), offset);
    // GCM is a stream mode: update returns every byte, final none.
    cipher.final();
    out.set(cipher.getAuthTag(), offset + body.length);
  },

  open(key, mode, counter, aad, payload) {
    if (payload.length < TAG_BYTES) return undefined;
    const bodyLength = payload.length - TAG_BYTES;
    const body = payload.subarray(0, bodyLength);
    const tag = payload.subarray(bodyLength);
    if (mode === "authenticate") return timingSafeEqual(hmacTag(key, aad, body), tag) ? body : undefined;
    const decipher = createDecipheriv("aes-256-gcm", key as unknown as Uint8Array, nonceOf(counter));
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
    return createPrivateKey({ key: Buffer.from(withPrefix(ED25519_PKCS8_PREFIX, privateKey)), format: "der", type: "pkcs8" }) as unknown as SigningKey;
  },

  verifyKey(publicKey) {
    return createPublicKey({ key: Buffer.from(withPrefix(ED25519_SPKI_PREFIX, publicKey)), format: "der", type: "spki" }) as unknown as VerifyKey;
  },

  sign(key, data) {
    return new Uint8Array(sign(null, data, key as unknown as KeyObject));
  },

  verify(key, data, signature) {
    try {
      return verify(null, data, key as unknown as KeyObject, signature);
    } catch {
      return false;
    }
  },

  publicKeyOf(privateKey) {
    return rawKeyFromJwk(createPublicKey(this.signingKey(privateKey) as unknown as KeyObject), "x");
  },

  generateIdentity() {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    return { privateKey: rawKeyFromJwk(privateKey, "d"), publicKey: rawKeyFromJwk(publicKey, "x") };
  },
};

/** The provider `#crypto` resolves to on Node and Bun. */
export const cryptoProvider: CryptoProvider = nodeCrypto;
