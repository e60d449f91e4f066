import { PayloadFormat } from "../../gen/activeblaze/v1/reliable_pb.ts";
import { BlazeError } from "../errors.ts";
import { BlazeMessage } from "./blaze-message.ts";
import { web } from "../web.ts";

const decoder = new web.TextDecoder("utf-8");

/** A delivered payload and the ways to read it; topic and group messages build on it. */
export abstract class PayloadMessage {
  #message: BlazeMessage | undefined;

  constructor(
    /** The payload as sent: raw bytes, or an encoded BlazeMessage (see `format`). */
    readonly payload: Uint8Array,
    /** How the payload is encoded. */
    readonly format: "bytes" | "blaze-message",
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

/** The bytes and format to send (or store) for a BlazeMessage or raw bytes; `what` names the value in the error. */
export function encodePayload(message: BlazeMessage | Uint8Array, what = "a message"): { payload: Uint8Array; format: PayloadFormat } {
  if (message instanceof BlazeMessage) return { payload: message.toBinary(), format: PayloadFormat.BLAZE_MESSAGE };
  if (message instanceof Uint8Array) return { payload: message, format: PayloadFormat.UNSPECIFIED };
  throw new BlazeError("INVALID_ARGUMENT", `${what} is a BlazeMessage or a Uint8Array`);
}
