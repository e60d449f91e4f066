// activeblaze/wire: the wire format — envelope codec, limits, refusal reasons and the generated
// schema types. Re-exports only.
export { createEnvelope, decodeEnvelope, encodeEnvelope, validateEnvelope } from "./codec.ts";
export type { Body, BodyCase, DecodeResult, EnvelopeContext, EnvelopeHeader, Refusal } from "./codec.ts";
export { DROP_REASONS, DropCounters } from "./drop-reason.ts";
export { DatagramBuilder, DatagramReader, encodeEnvelopeHeader, HandReaders, toData, toDataFields } from "./frames.ts";
export type { DataFields, FrameReader, HandReadCase, HandReadFrame, ReceivedDatagram, ReceivedFrame, ReceiveResult, SplitEnvelope } from "./frames.ts";
export type { DropReason } from "./drop-reason.ts";
export * from "./limits.ts";
export { wireFiles, wireRegistry } from "./registry.ts";
export * from "../../gen/activeblaze/v1/cluster_pb.ts";
export * from "../../gen/activeblaze/v1/common_pb.ts";
export * from "../../gen/activeblaze/v1/diagnostics_pb.ts";
export * from "../../gen/activeblaze/v1/envelope_pb.ts";
export * from "../../gen/activeblaze/v1/fec_pb.ts";
export * from "../../gen/activeblaze/v1/membership_pb.ts";
export * from "../../gen/activeblaze/v1/message_pb.ts";
export * from "../../gen/activeblaze/v1/messaging_pb.ts";
export * from "../../gen/activeblaze/v1/reliable_pb.ts";
export * from "../../gen/activeblaze/v1/security_pb.ts";
export * from "../../gen/activeblaze/v1/totem_pb.ts";
