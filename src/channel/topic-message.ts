import { PayloadFormat } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { PayloadMessage } from "../message/payload-message.ts";

/** A message delivered to a topic listener. */
export class TopicMessage extends PayloadMessage {
  constructor(
    /** The topic it was broadcast on. */
    readonly destination: string,
    /** The sender's member id (hex). */
    readonly sender: string,
    payload: Uint8Array,
    format: "bytes" | "blaze-message",
    /** Its sequence number in the sender's stream (0 for a local copy of one's own). */
    readonly seq: number,
    /** Whether it was sent out of band (delivered without waiting for earlier messages). */
    readonly outOfBand: boolean,
  ) {
    super(payload, format);
  }
}

export function formatName(format: number): "bytes" | "blaze-message" {
  return format === PayloadFormat.BLAZE_MESSAGE ? "blaze-message" : "bytes";
}
