import { systemRandom } from "../transport/clock.ts";
import type { CryptoProvider } from "./crypto-provider.ts";
import { KEY_BYTES } from "./crypto-provider.ts";
import { defaultCryptoProvider } from "./default-provider.ts";
import { encodeBase64 } from "./options.ts";

/** A new random key secret for `security.keys`: 32 bytes from the runtime's cryptographic generator, in base64. */
export function generateSecret(): string {
  return encodeBase64(systemRandom.fill(new Uint8Array(KEY_BYTES)));
}

/** A new Ed25519 key pair for insider mode's `security.identity`, in base64. */
export async function generateIdentity(provider?: CryptoProvider): Promise<{ publicKey: string; privateKey: string }> {
  const keys = await (provider ?? (await defaultCryptoProvider())).generateIdentity();
  return { publicKey: encodeBase64(keys.publicKey), privateKey: encodeBase64(keys.privateKey) };
}
