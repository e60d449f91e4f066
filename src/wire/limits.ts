/** Wire-format limits. A datagram that breaks one is dropped with reason `OVERSIZE`. */

/** The protocol major version this build speaks. Envelopes of another major version are refused. */
export const PROTOCOL_VERSION = 1;
/** The protocol minor version this build writes. Minor versions are never refused. */
export const PROTOCOL_MINOR_VERSION = 0;
/** The protocol name used in conformance vectors and documentation. */
export const PROTOCOL_NAME = "activeblaze/v1";

/** Largest datagram accepted: the IPv4 UDP payload maximum, 65,535 − 8 − 20 bytes. */
export const MAX_DATAGRAM_BYTES = 65_507;
/** Longest cluster name, in UTF-8 bytes. */
export const MAX_CLUSTER_NAME_BYTES = 255;
/** Longest member name, topic, inbox, queue or group name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;
/** Length of a member id, in bytes. */
export const MEMBER_ID_BYTES = 16;
/** Most fragments one message may be split into (with 60 KB fragments, about 3.9 GB). */
export const MAX_FRAGMENT_COUNT = 65_536;
