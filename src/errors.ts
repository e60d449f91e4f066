/**
 * The library's one error class. Every error thrown or reported by activeblaze is a
 * `BlazeError` with a stable `code`; the original failure, when there is one, is kept in `cause`.
 */

/** Stable error codes. New codes may be added; existing ones never change meaning. */
export type BlazeErrorCode =
  /** An options object failed validation; `path` names the field. */
  | "INVALID_OPTION"
  /** An argument of a call is not acceptable; `path` names it where it helps. */
  | "INVALID_ARGUMENT"
  /** An operation did not complete within its deadline. */
  | "TIMEOUT"
  /** An operation was cancelled through its `AbortSignal`. */
  | "ABORTED"
  /** The object was already closed or shut down. */
  | "CLOSED"
  /** A call is not allowed in the object's current life-cycle state. */
  | "ILLEGAL_STATE"
  /** A datagram is larger than the transport's maximum datagram size. */
  | "DATAGRAM_TOO_LARGE"
  /** A message is larger than the configured maximum message size. */
  | "MESSAGE_TOO_LARGE"
  /** A socket could not be bound, or a multicast group could not be joined. */
  | "BIND_FAILED"
  /** A datagram could not be sent. */
  | "SEND_FAILED"
  /** A configured host name (a static peer) could not be resolved; it is tried again. */
  | "RESOLVE_FAILED"
  /** A runtime adapter was loaded in a runtime it does not support. */
  | "WRONG_RUNTIME"
  /** Bytes are not a valid protobuf encoding of the expected message. */
  | "DECODE_FAILED"
  /** A peer speaks a protocol major version this build does not support. */
  | "UNSUPPORTED_VERSION"
  /** A required field is absent. */
  | "MISSING_FIELD"
  /** A datagram or field exceeds a documented limit. */
  | "OVERSIZE"
  /** A datagram belongs to another cluster. */
  | "WRONG_CLUSTER"
  /** The member a message or request was for left the group, or is not in it. */
  | "UNREACHABLE"
  /** A user-supplied listener threw; the error is in `cause`. */
  | "LISTENER_ERROR"
  /** A subscription's messages waited unread past its `highWaterMark`: it ended (see `subscribe`). */
  | "OVERFLOW"
  /** Any other transport failure reported by the runtime. */
  | "TRANSPORT_ERROR"
  /** A state-map write or lock request refused: another member holds the key's lock. */
  | "LOCKED"
  /** A compare-and-set refused: the entry is at another version. */
  | "VERSION_MISMATCH"
  /** A write or lock operation refused: its fencing token no longer holds the lock. */
  | "STALE_TOKEN"
  /** Quorum mode: this side of a partition holds no majority of the last agreed view. */
  | "NO_QUORUM"
  /** A lock to release or renew does not exist. */
  | "NOT_FOUND"
  /** A JMS message selector does not parse; the message names the position (JMS's InvalidSelectorException). */
  | "INVALID_SELECTOR"
  /** A transaction could not commit and was rolled back: nothing it sent or acknowledged took effect. */
  | "TRANSACTION_ROLLED_BACK"
  /** Asked for something this version does not do (e.g. PERSISTENT delivery); never silently downgraded. */
  | "UNSUPPORTED"
  /** A queue holds its most messages or bytes: the send is refused (JMS's ResourceAllocationException). */
  | "QUEUE_FULL"
  /**
   * A fault inside activeblaze: a protocol timer, callback or the receive path threw. The member carries
   * on (the datagram or timer in question is skipped); the original exception is in `cause`.
   */
  | "INTERNAL_ERROR";

export interface BlazeErrorOptions {
  /** The underlying failure. */
  cause?: unknown;
  /** For `INVALID_OPTION` and decode errors: the path of the offending field. */
  path?: ReadonlyArray<string | number>;
}

export class BlazeError extends Error {
  override readonly name = "BlazeError";
  readonly code: BlazeErrorCode;
  readonly path: ReadonlyArray<string | number>;

  constructor(code: BlazeErrorCode, message: string, options: BlazeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.path = options.path ?? [];
  }
}

/** True when `error` is a `BlazeError`, optionally with the given code. */
export function isBlazeError(error: unknown, code?: BlazeErrorCode): error is BlazeError {
  return error instanceof BlazeError && (code === undefined || error.code === code);
}

/** True when `error` is a `BlazeError` with code `TIMEOUT`. */
export function isTimeoutError(error: unknown): error is BlazeError {
  return isBlazeError(error, "TIMEOUT");
}

/** Wraps anything thrown where activeblaze's own code ran (a timer, the receive path) as `INTERNAL_ERROR`. */
export function internalError(where: string, cause: unknown): BlazeError {
  if (cause instanceof BlazeError) return cause;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new BlazeError("INTERNAL_ERROR", `${where} threw: ${detail}`, { cause });
}
