import type { BlazeError } from "../errors.ts";
import { web } from "../web.ts";

/** Where a background failure happened. */
export type ErrorStage =
  /** A socket failure reported by the runtime (a failed send, a socket error). */
  | "transport"
  /** A user's listener or handler threw. */
  | "listener"
  /** activeblaze's own code threw while handling a datagram. */
  | "receive"
  /** activeblaze's own code threw in a protocol timer or deferred call. */
  | "timer"
  /** activeblaze's own code produced a frame it could not send (it is dropped). */
  | "send";

/** How often a kind of failure is logged (or printed): once a window, with a count of the rest. */
const CONSOLE_WINDOW_MS = 10_000;

/**
 * Background failures of a member: counted by stage, and handed to the `error` listeners. With a logger
 * (the `logger` option) every one is also logged; without one, and with no listener, they are still
 * reported — on the console (as an unhandled `error` event is in Node, though here it never ends the
 * process). Either way at most once per kind and window, with the number held back since.
 */
export class ErrorReport {
  readonly counts: Record<ErrorStage, number> = { transport: 0, listener: 0, receive: 0, timer: 0, send: 0 };
  readonly #quiet = new Map<string, { until: number; held: number }>();

  constructor(
    /** Hands the failure to the `error` listeners; returns false when there is none. */
    private readonly emit: (error: BlazeError, stage: ErrorStage) => boolean,
    private readonly now: () => number,
    private readonly label: () => string,
    /** Logs a failure (`suppressed`: how many of its kind were held back since the last); undefined without a logger. */
    private readonly log: ((error: BlazeError, stage: ErrorStage, suppressed: number) => void) | undefined,
  ) {}

  report(error: BlazeError, stage: ErrorStage): void {
    this.counts[stage]++;
    const handled = this.emit(error, stage);
    if (handled && this.log === undefined) return;
    const kind = `${stage}/${error.code}`;
    const now = this.now();
    const quiet = this.#quiet.get(kind);
    if (quiet !== undefined && now < quiet.until) {
      quiet.held++;
      return;
    }
    const held = quiet?.held ?? 0;
    this.#quiet.set(kind, { until: now + CONSOLE_WINDOW_MS, held: 0 });
    if (this.log !== undefined) {
      this.log(error, stage, held);
      return;
    }
    const more = held > 0 ? ` (${held} more like it since the last report)` : "";
    web.console.error(`activeblaze ${this.label()}: unhandled ${stage} error${more} — add an "error" listener to handle these:`, error);
  }
}
