/**
 * `activeblaze/security`: keys and the crypto provider behind sealed datagrams — `generateSecret` for a
 * cluster key, `generateIdentity` for a member's key pair, a channel's `security` handle (key rotation),
 * and the provider interface (`activeblaze/crypto` picks the runtime's). The option's schema and types
 * are in `activeblaze/options`.
 */
export { ChannelSecurity } from "./channel-security.ts";
export type {
  AsyncCryptoProvider,
  CryptoOperations,
  CryptoProvider,
  CryptoResult,
  IdentityKeys,
  SealMode,
  SenderKey,
  SigningKey,
  SyncCryptoProvider,
  VerifyKey,
} from "./crypto-provider.ts";
export type { KeyRotationOptions, KeyRotationResult } from "./key-rotation.ts";
export { generateIdentity, generateSecret } from "./keys.ts";
