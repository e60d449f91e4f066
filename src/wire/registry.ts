import { createRegistry, type Registry } from "@bufbuild/protobuf";
import { file_activeblaze_v1_cluster } from "../../gen/activeblaze/v1/cluster_pb.ts";
import { file_activeblaze_v1_common } from "../../gen/activeblaze/v1/common_pb.ts";
import { file_activeblaze_v1_diagnostics } from "../../gen/activeblaze/v1/diagnostics_pb.ts";
import { file_activeblaze_v1_envelope } from "../../gen/activeblaze/v1/envelope_pb.ts";
import { file_activeblaze_v1_fec } from "../../gen/activeblaze/v1/fec_pb.ts";
import { file_activeblaze_v1_membership } from "../../gen/activeblaze/v1/membership_pb.ts";
import { file_activeblaze_v1_message } from "../../gen/activeblaze/v1/message_pb.ts";
import { file_activeblaze_v1_messaging } from "../../gen/activeblaze/v1/messaging_pb.ts";
import { file_activeblaze_v1_relay } from "../../gen/activeblaze/v1/relay_pb.ts";
import { file_activeblaze_v1_reliable } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { file_activeblaze_v1_security } from "../../gen/activeblaze/v1/security_pb.ts";
import { file_activeblaze_v1_totem } from "../../gen/activeblaze/v1/totem_pb.ts";

/** Every file of the activeblaze.v1 schema, for lookups by fully qualified name. */
export const wireFiles = [
  file_activeblaze_v1_common,
  file_activeblaze_v1_message,
  file_activeblaze_v1_reliable,
  file_activeblaze_v1_membership,
  file_activeblaze_v1_cluster,
  file_activeblaze_v1_totem,
  file_activeblaze_v1_fec,
  file_activeblaze_v1_security,
  file_activeblaze_v1_diagnostics,
  file_activeblaze_v1_envelope,
  file_activeblaze_v1_messaging,
  // Not in envelopes: the frames between bridged sites (activeblaze/relay).
  file_activeblaze_v1_relay,
] as const;

/** A registry of every message and enum type of the activeblaze.v1 schema. */
export const wireRegistry: Registry = createRegistry(...wireFiles);
