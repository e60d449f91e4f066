/**
 * `activeblaze/options`: the zod schemas every level's options are parsed with, their defaults, the
 * resolved (defaults filled in) types, and the types of the nested options (`network`, `nack`,
 * `unicast`, `fec`, `totem`, `group`, `state`, `security`, `transport`).
 */
export { channelOptionsSchema } from "./channel/options.ts";
export type { MulticastNetworkOptions, ResolvedChannelOptions, StaticNetworkOptions } from "./channel/options.ts";
export { groupOptionsSchema } from "./group/options.ts";
export type { GroupOptions, ResolvedGroupOptions } from "./group/options.ts";
export { defaultCoordinatorSelector } from "./group/view.ts";
export type { CoordinatorSelector } from "./group/view.ts";
export { stateOptionsSchema } from "./cluster/options.ts";
export type { ResolvedStateOptions, StateOptions } from "./cluster/options.ts";
export { DEFAULT_NACK_OPTIONS } from "./reliable/nack/nack-protocol.ts";
export type { NackOptions } from "./reliable/nack/nack-protocol.ts";
export type { UnicastOptions } from "./reliable/unicast/unicast-protocol.ts";
export { DEFAULT_FEC_OPTIONS, fecOptionsSchema } from "./reliable/fec/options.ts";
export type { FecOptions } from "./reliable/fec/options.ts";
export { DEFAULT_TOTEM_OPTIONS, totemOptionsSchema } from "./reliable/totem/options.ts";
export type { TotemOptions } from "./reliable/totem/options.ts";
export { DEFAULT_SECURITY_OPTIONS, securityOptionsSchema } from "./security/options.ts";
export type { ResolvedSecurityOptions, SecurityOptions } from "./security/options.ts";
export type { KeyInput } from "./security/keyring.ts";
export { resolveTransportOptions, transportOptionsSchema } from "./transport/options.ts";
export type { ResolvedTransportOptions } from "./transport/options.ts";
export type { TransportOptions } from "./transport/transport.ts";
