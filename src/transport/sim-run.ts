/**
 * Helpers for seeded tests: run a scenario under many seeds, and make a failure say which seed
 * failed and how to replay exactly that run.
 */

/** Seeds to run: a list, or `count` consecutive seeds starting at `from`. */
export type SeedSpec = readonly number[] | { readonly from: number; readonly count: number };

/** A seeded run failed; `cause` is the original error. */
export class SeedFailure extends Error {
  override readonly name = "SeedFailure";
  readonly seed: number;

  constructor(seed: number, cause: unknown, file: string | undefined) {
    const reason = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(`seed=${seed} failed: ${reason}\n  rerun it alone: BLAZE_SEED=${seed} npx vitest run ${file ?? "<test file>"}`, {
      cause,
    });
    this.seed = seed;
  }
}

/** The seeds of a {@link SeedSpec}, as a list. */
export function expandSeeds(spec: SeedSpec): number[] {
  if (!("from" in spec)) return [...(spec as readonly number[])];
  return Array.from({ length: spec.count }, (_, i) => spec.from + i);
}

/**
 * The seeds to run: `BLAZE_SEED=<n>` runs that one seed; `BLAZE_SEEDS=<count>` runs `count`
 * consecutive seeds from the first default seed (or 1); otherwise the defaults.
 */
export function seedsFromEnv(defaultSeeds: SeedSpec): number[] {
  const single = readEnv("BLAZE_SEED");
  if (single !== undefined && single !== "") return [parseSeed(single, "BLAZE_SEED")];
  const defaults = expandSeeds(defaultSeeds);
  const count = readEnv("BLAZE_SEEDS");
  if (count !== undefined && count !== "") {
    return expandSeeds({ from: defaults[0] ?? 1, count: parseSeed(count, "BLAZE_SEEDS") });
  }
  return defaults;
}

/**
 * Runs `fn(seed)`; when it throws or rejects, throws a {@link SeedFailure} naming the seed and the
 * command that replays it. `file` names the test file in that command (default: found from the
 * call stack, best effort).
 */
export async function withSeed<T>(seed: number, fn: (seed: number) => T | Promise<T>, file?: string): Promise<T> {
  const testFile = file ?? callerTestFile();
  try {
    return await fn(seed);
  } catch (error) {
    throw error instanceof SeedFailure ? error : new SeedFailure(seed, error, testFile);
  }
}

/**
 * Runs `run(seed)` for each seed of `seeds` — after `BLAZE_SEED`/`BLAZE_SEEDS` overrides, see
 * {@link seedsFromEnv} — one after another, stopping at the first failure with a {@link SeedFailure}.
 */
export async function runSeeds(options: {
  readonly seeds: SeedSpec;
  readonly run: (seed: number) => void | Promise<void>;
  /** The test file named in the rerun command. Default: found from the call stack. */
  readonly file?: string;
}): Promise<void> {
  const file = options.file ?? callerTestFile();
  for (const seed of seedsFromEnv(options.seeds)) await withSeed(seed, options.run, file);
}

function parseSeed(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got "${text}"`);
  return n;
}

/** An environment variable on Node, Bun or Deno; undefined where there is none or no permission. */
function readEnv(name: string): string | undefined {
  const g = globalThis as {
    process?: { env?: Record<string, string | undefined> };
    Deno?: { env?: { get(name: string): string | undefined } };
  };
  try {
    return g.process?.env?.[name] ?? g.Deno?.env?.get(name);
  } catch {
    return undefined;
  }
}

/** The first `*.test.*`/`*.spec.*` file on the current call stack, for the rerun hint. */
function callerTestFile(): string | undefined {
  const stack = new Error().stack ?? "";
  const match = /((?:file:\/\/)?[^\s()'"]+\.(?:test|spec)\.[cm]?[jt]sx?)/.exec(stack);
  return match?.[1]?.replace(/^file:\/\//, "");
}
