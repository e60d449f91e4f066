import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createServer } from "node:net";

/**
 * A nats-server of the test's own (Debian's `nats-server` package): on 127.0.0.1 at a free port,
 * stopped by its pid. Tests skip with {@link natsServerMissing}'s message where it is not installed.
 */

/** Why no nats-server can be started here, or undefined when one can. */
export function natsServerMissing(): string | undefined {
  try {
    execFileSync("nats-server", ["--version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "nats-server is not on PATH (Debian: apt-get install nats-server)";
  }
}

export class NatsServer {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(): Promise<NatsServer> {
    const port = await freePort();
    const child = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server did not start within 10 s:\n${output}`)), 10_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("Server is ready")) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.on("exit", (code) => reject(new Error(`nats-server exited (${code}):\n${output}`)));
    });
    return new NatsServer(`nats://127.0.0.1:${port}`, child);
  }

  /** Stops the server (its pid only) and waits until it is gone. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    process.kill(this.child.pid!, "SIGTERM");
    await exited;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
