// The public API of activeblaze. Re-exports only.
export { Channel, createChannel } from "./channel/channel.ts";
export type {
  BroadcastOptions,
  ChannelEvents,
  ChannelState,
  ChannelStats,
  PeerInfo,
  TopicListener,
} from "./channel/channel.ts";
export { channelOptionsSchema } from "./channel/options.ts";
export type { ChannelOptions, MulticastNetworkOptions, ResolvedChannelOptions, StaticNetworkOptions } from "./channel/options.ts";
export type { EndpointStats, NetworkStats } from "./channel/endpoint.ts";
export type { AdmissionStats } from "./channel/admission.ts";
export type { ErrorStage } from "./channel/error-report.ts";
export type { HostResolver, Seed } from "./transport/host-names.ts";
export { TopicMessage } from "./channel/topic-message.ts";
export { createGroupChannel, GroupChannel } from "./group/group-channel.ts";
export type {
  GroupEvents,
  GroupMessageListener,
  InboxListener,
  MemberChangedListener,
  MembershipEvent,
  RequestOptions,
  SendOptions,
} from "./group/group-channel.ts";
export { GroupMessage } from "./group/group-message.ts";
export { groupOptionsSchema } from "./group/options.ts";
export type { GroupChannelOptions, GroupOptions, ResolvedGroupOptions } from "./group/options.ts";
export type { GroupExtension } from "./group/group-channel.ts";
export { defaultCoordinatorSelector } from "./group/view.ts";
export { ClusterChannel, createClusterChannel } from "./cluster/cluster-channel.ts";
export type { MasterChangedListener } from "./cluster/cluster-channel.ts";
export { stateOptionsSchema } from "./cluster/options.ts";
export type { ClusterChannelOptions, ResolvedStateOptions, StateOptions } from "./cluster/options.ts";
export { LockHandle, ReplicatedMap } from "./cluster/replicated-map.ts";
export type {
  LockInfo,
  LockOptions,
  MapChange,
  MapChangedListener,
  MapEntry,
  MapEvents,
  MapValue,
  PutOptions,
  RemoveOptions,
  WriteOptions,
} from "./cluster/replicated-map.ts";
export type { MemberInstance } from "./cluster/state-types.ts";
export type { StateStats } from "./cluster/state-engine.ts";
export type { CoordinatorSelector, Member, View, ViewId } from "./group/view.ts";
export type { WaitOptions } from "./channel/wait.ts";
export type { SubscribeOptions, Subscription } from "./channel/events.ts";
export { BlazeError, isBlazeError, isTimeoutError } from "./errors.ts";
export type { BlazeErrorCode, BlazeErrorOptions } from "./errors.ts";
export { BlazeMessage } from "./message/blaze-message.ts";
export type { BlazeValue, BlazeValueKind } from "./message/blaze-message.ts";
export { DEFAULT_NACK_OPTIONS } from "./reliable/nack/nack-protocol.ts";
export type { NackOptions } from "./reliable/nack/nack-protocol.ts";
export type { UnicastOptions } from "./reliable/unicast/unicast-protocol.ts";
export { DEFAULT_FEC_OPTIONS, fecOptionsSchema } from "./reliable/fec/options.ts";
export type { FecOptions } from "./reliable/fec/options.ts";
export type { FecStats } from "./reliable/fec/fec-protocol.ts";
export type { ProtocolStats } from "./reliable/protocol.ts";
export { DEFAULT_TOTEM_OPTIONS, totemOptionsSchema } from "./reliable/totem/options.ts";
export type { TotemOptions } from "./reliable/totem/options.ts";
export type { TotemState, TotemStats } from "./reliable/totem/totem-protocol.ts";
export { ChannelSecurity } from "./security/channel-security.ts";
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
} from "./security/crypto-provider.ts";
export type { SecurityStats } from "./security/datagram-guard.ts";
export type { KeyRotationOptions, KeyRotationResult } from "./security/key-rotation.ts";
export type { KeyInput } from "./security/keyring.ts";
export { generateIdentity, generateSecret } from "./security/keys.ts";
export { DEFAULT_SECURITY_OPTIONS, securityOptionsSchema } from "./security/options.ts";
export type { ResolvedSecurityOptions, SecurityOptions } from "./security/options.ts";
export { systemClock, systemRandom } from "./transport/clock.ts";
export type { Clock, RandomSource, TimerHandle } from "./transport/clock.ts";
export { MAX_UDP_PAYLOAD_BYTES } from "./transport/transport.ts";
export type {
  Address,
  ReceiveHandler,
  Transport,
  TransportErrorHandler,
  TransportFactory,
  TransportOptions,
} from "./transport/transport.ts";
export { resolveTransportOptions, transportOptionsSchema } from "./transport/options.ts";
export type { ResolvedTransportOptions } from "./transport/options.ts";
export { DropCounters } from "./wire/drop-reason.ts";
export type { DropReason } from "./wire/drop-reason.ts";
export type { AbortSignalLike } from "./web.ts";
