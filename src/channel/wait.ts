import { BlazeError } from "../errors.ts";
import type { Clock } from "../transport/clock.ts";
import type { AbortSignalLike } from "../web.ts";

/** How long to wait, and how to give up early. */
export interface WaitOptions {
  /** Give up after this many milliseconds with a `TIMEOUT` error. */
  readonly timeoutMs?: number;
  /** Give up when this signal aborts, with an `ABORTED` error. */
  readonly signal?: AbortSignalLike;
}

/**
 * Waits until `check()` is true, re-checking whenever `subscribe`'s callback fires. Rejects with
 * `TIMEOUT` after `timeoutMs` (the clock's time) and with `ABORTED` when the signal aborts.
 */
export function waitUntil(
  clock: Clock,
  check: () => boolean,
  subscribe: (wake: () => void) => () => void,
  what: string,
  options: WaitOptions,
  defaultTimeoutMs: number,
): Promise<void> {
  if (check()) return Promise.resolve();
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(aborted(what, signal));
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  return new Promise((resolve, reject) => {
    const finish = (error?: BlazeError) => {
      unsubscribe();
      timer.cancel();
      signal?.removeEventListener("abort", onAbort);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onAbort = () => finish(aborted(what, signal!));
    const unsubscribe = subscribe(() => {
      if (check()) finish();
    });
    const timer = clock.setTimer(timeoutMs, () => finish(new BlazeError("TIMEOUT", `timed out after ${timeoutMs} ms waiting for ${what}`)));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function aborted(what: string, signal: AbortSignalLike): BlazeError {
  return new BlazeError("ABORTED", `aborted while waiting for ${what}`, { cause: signal.reason });
}
