/** The crypto provider of Node.js and Bun, on `node:crypto`: synchronous, so sealing adds no scheduling. */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  sign,
  timingSafeEqual,
  verify,
} from "node:crypto";
import {
  type CryptoProvider,
  ED25519_PKCS8_PREFIX,
  ED25519_SPKI_PREFIX,
  KEY_BYTES,
  nonceOf,
  type SenderKey,
  type SigningKey,
  type SyncCryptoProvider,
  TAG_BYTES,
  type VerifyKey,
  withPrefix,
} from "../security/crypto-provider.ts";

const NO_SALT = new Uint8Array(0);

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
    return new Uint8Array(hkdfSync("sha256", secret, NO_SALT, info, KEY_BYTES)) as unknown as SenderKey;
  },

  seal(key, mode, counter, aad, body) {
    const payload = new Uint8Array(body.length + TAG_BYTES);
    if (mode === "authenticate") {
      payload.set(body);
      payload.set(hmacTag(key, aad, body), body.length);
      return payload;
    }
    const cipher = createCipheriv("aes-256-gcm", key as unknown as Uint8Array, nonceOf(counter));
    cipher.setAAD(aad);
    const ciphertext = cipher.update(body);
    payload.set(ciphertext);
    // GCM is a stream mode: update returns every byte, final none.
    cipher.final();
    payload.set(cipher.getAuthTag(), ciphertext.length);
    return payload;
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
