// activeblaze/relay: sites bridged over NATS. Re-exports only.
export { createRelayChannel, MAX_RELAYED_PAYLOAD_BYTES, RelayChannel } from "./relay-channel.ts";
export type { RelayEvents, RelayStats, SiteAddress, SiteInfo, SiteMessageListener } from "./relay-channel.ts";
export { SiteMessage } from "./site-message.ts";
export { mapCopyOptionsSchema, natsOptionsSchema, relayOptionsSchema } from "./options.ts";
export type { MapCopyOptions, NatsOptions, RelayChannelOptions, RelayOptions, ResolvedMapCopyOptions, ResolvedRelayOptions } from "./options.ts";
export { CopiedMap, compareStamps } from "./copied-map.ts";
export type { CopiedMapChange, CopiedMapEntry, CopiedWriteOptions, CopyStamp } from "./copied-map.ts";
export type { MapCopyStats } from "./map-copy.ts";
export type { CopiedEntry, SiteMember, StreamKind } from "./relay-frames.ts";
export type { ReceivedStats } from "./received-streams.ts";
export type { GatewayStats } from "./site-gateway.ts";
export type { SiteBus, SiteBusFactory } from "./site-bus.ts";
export { natsBus } from "./nats-bus.ts";
export { SimulatedBus } from "./simulated-bus.ts";
export type { SimulatedBusOptions } from "./simulated-bus.ts";
