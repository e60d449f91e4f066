// The public API of activeblaze: its three levels, messages and errors. Re-exports only. Options
// schemas are in `activeblaze/options`, runtime plumbing in `activeblaze/transport`, the crypto provider
// in `activeblaze/security`, counters and probes in `activeblaze/diagnostics`, the wire in `activeblaze/wire`.

// A channel: reliable multicast topics.
export { Channel, createChannel } from "./channel/channel.ts";
export type { BroadcastOptions, ChannelEvents, ChannelState, ChannelStats, PeerInfo, TopicListener } from "./channel/channel.ts";
export type { ChannelOptions } from "./channel/options.ts";
export { TopicMessage } from "./channel/topic-message.ts";

// A group channel: membership, point to point, inboxes, queues, request/reply.
export { createGroupChannel, GroupChannel } from "./group/group-channel.ts";
export type {
  GroupChannelApi,
  GroupChannelEvents,
  GroupEvents,
  GroupMessageListener,
  InboxListener,
  MembershipEvent,
  RequestOptions,
  SendOptions,
} from "./group/group-channel.ts";
export { GroupMessage } from "./group/group-message.ts";
export type { GroupChannelOptions } from "./group/options.ts";
export type { Member, View, ViewId } from "./group/view.ts";

// A cluster channel: the replicated map and its locks.
export { ClusterChannel, createClusterChannel } from "./cluster/cluster-channel.ts";
export type { ClusterChannelEvents } from "./cluster/cluster-channel.ts";
export type { ClusterEvents } from "./cluster/cluster-state.ts";
export type { ClusterChannelOptions } from "./cluster/options.ts";
export { LockHandle, ReplicatedMap } from "./cluster/replicated-map.ts";
export type {
  LockInfo,
  LockOptions,
  MapChange,
  MapEntry,
  MapEvents,
  MapValue,
  PutOptions,
  RemoveOptions,
  WriteOptions,
} from "./cluster/replicated-map.ts";
export type { MemberInstance } from "./cluster/state-types.ts";

// Messages, errors, waiting and iterating.
export { BlazeMessage } from "./message/blaze-message.ts";
export type { BlazeValue, BlazeValueKind } from "./message/blaze-message.ts";
export { BlazeError, isBlazeError, isTimeoutError } from "./errors.ts";
export type { BlazeErrorCode, BlazeErrorOptions } from "./errors.ts";
export type { WaitOptions } from "./channel/wait.ts";
export type { SubscribeOptions, Subscription } from "./channel/events.ts";
export type { AbortSignalLike } from "./web.ts";
