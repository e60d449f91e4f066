/**
 * The web-standard globals the core uses, typed here because the core compiles without any runtime's
 * types (`"types": []`). Node ≥ 20, Bun and Deno all provide them.
 */
export interface WebGlobals {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  queueMicrotask(fn: () => void): void;
  performance: { now(): number };
  crypto: { getRandomValues<T extends Uint8Array>(array: T): T };
  TextEncoder: new () => { encode(text: string): Uint8Array; encodeInto(text: string, into: Uint8Array): { read: number; written: number } };
  TextDecoder: new (label: string, options?: { fatal?: boolean }) => { decode(bytes: Uint8Array): string };
  atob(base64: string): string;
  btoa(binary: string): string;
  console: { error(...data: unknown[]): void };
}

export const web = globalThis as unknown as WebGlobals;

/** The part of the web-standard `AbortSignal` the library uses. */
export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}
