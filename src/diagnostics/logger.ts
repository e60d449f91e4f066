/** How serious a log entry is. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/**
 * One log entry: a level, a message for people, and structured fields (who logged it, and what it is
 * about) for machines. Every entry has `member` (the id's first 8 hex digits), `name` and `cluster`.
 */
export interface LogEntry {
  readonly level: LogLevel;
  readonly message: string;
  /** Wall-clock time, ms since the Unix epoch. */
  readonly time: number;
  readonly member: string;
  readonly name: string;
  readonly cluster: string;
  /** For failures: where it happened (`transport`, `listener`, `receive`, `timer`, `send`) and its error code. */
  readonly stage?: string;
  readonly code?: string;
  /** For failures: the error itself, `cause` included. */
  readonly error?: Error;
  /** Failures of the same kind left out since the last entry of that kind (entries are rate-limited per kind). */
  readonly suppressed?: number;
  /** What the entry is about: a group, a member (id and name), a duration, a count… */
  readonly [field: string]: unknown;
}

/**
 * Where a member's log goes: the `logger` option. Every background failure is logged (level `error`),
 * and so are what an operator wants to know about (`warn`: a stalled event loop, lost messages, an
 * unresponsive receiver; `info`: start and stop, peers and members coming and going, views and
 * coordinators). Adapting it to a logging library takes one line, e.g. pino's:
 * `logger: (entry) => pino[entry.level](entry, entry.message)`.
 */
export type Logger = (entry: LogEntry) => void;
