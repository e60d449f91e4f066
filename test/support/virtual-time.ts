import type { VirtualClock } from "../../src/transport/virtual-clock.ts";

/** Lets the promise reactions a step of virtual time set off run (a few rounds of microtasks). */
export async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => queueMicrotask(resolve));
}

/**
 * Runs virtual time in steps of `stepMs` until `promise` settles; returns its value or throws its error.
 * Throws once `maxMs` of virtual time passed without it settling.
 */
export async function settleInVirtualTime<T>(clock: VirtualClock, promise: Promise<T>, maxMs: number, stepMs = 2): Promise<T> {
  let outcome: { value: T } | { error: unknown } | undefined;
  promise.then(
    (value) => (outcome = { value }),
    (error: unknown) => (outcome = { error }),
  );
  const start = clock.now();
  while (outcome === undefined) {
    if (clock.now() - start > maxMs) throw new Error(`not settled within ${maxMs} virtual ms`);
    clock.runFor(stepMs);
    await flushMicrotasks();
  }
  if ("error" in outcome) throw outcome.error;
  return outcome.value;
}
