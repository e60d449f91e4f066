import { PayloadFormat } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { BlazeMessage } from "../message/blaze-message.ts";
import { web } from "../web.ts";

const decoder = new web.TextDecoder("utf-8");

/** A message delivered to a topic listener. */
export class TopicMessage {
  #message: BlazeMessage | undefined;

  constructor(
    /** The topic it was broadcast on. */
    readonly destination: string,
    /** The sender's member id (hex). */
    readonly sender: string,
    /** The payload as sent: raw bytes, or an encoded BlazeMessage (see `format`). */
    readonly payload: Uint8Array,
    /** How the payload is encoded. */
    readonly format: "bytes" | "blaze-message",
    /** Its sequence number in the sender's stream (0 for a local copy of one's own). */
    readonly seq: number,
    /** Whether it was sent out of band (delivered without waiting for earlier messages). */
    readonly outOfBand: boolean,
  ) {}

  /** The payload as a BlazeMessage: decoded when one was sent; raw bytes come wrapped under "bytes". */
  get message(): BlazeMessage {
    this.#message ??= this.format === "blaze-message" ? BlazeMessage.fromBinary(this.payload) : new BlazeMessage(this.payload);
    return this.#message;
  }

  /** The text of the message: a BlazeMessage's "text", or raw bytes read as UTF-8. */
  text(): string {
    return this.format === "blaze-message" ? (this.message.getText() ?? "") : decoder.decode(this.payload);
  }

  /** The JSON value of a message sent with `BlazeMessage.fromObject`, or of raw bytes holding JSON. */
  json<T = unknown>(): T {
    return this.format === "blaze-message" ? (this.message.getObject<T>() as T) : (JSON.parse(this.text()) as T);
  }
}

export function formatName(format: number): "bytes" | "blaze-message" {
  return format === PayloadFormat.BLAZE_MESSAGE ? "blaze-message" : "bytes";
}
