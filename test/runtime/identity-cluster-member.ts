/**
 * One member of a cluster in insider mode (its member id is its identity key's), in quorum mode with
 * `minimumMembers` 2, for test/hosts/cluster-identity.test.ts: a process started again with the same
 * identity is the same member id as a later incarnation. It joins group "g" of a cluster channel and
 * prints one JSON line (an {@link IdentityMemberEvent}) per event: its views, its master, and a steady
 * stream of acknowledged puts `w/<name>/<n>` (each bounded by a timeout, a refusal printed). It exits on
 * its own after `lifetimeMs`, whatever happens. Usage: `<runtime> identity-cluster-member.ts '<config as JSON>'`.
 */
import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import { detectRuntime, limitLifetime, type MemberBaseConfig, memberChannelOptions } from "./runtime-host.ts";

export interface IdentityMemberConfig extends MemberBaseConfig {
  /** The cluster key (base64) and this member's identity key pair (base64). */
  readonly secret: string;
  readonly identity: { readonly publicKey: string; readonly privateKey: string };
  /** Each put gives up after this long. */
  readonly operationTimeoutMs: number;
  /** How long `join()` may wait for the map to be ready; past it, the member goes on (its writes are refused, say, without a quorum). */
  readonly joinTimeoutMs: number;
}

/** `at` is wall-clock ms (with a fraction), comparable across processes. */
export type IdentityMemberEvent =
  /** `ready`: join() resolved (the map synced), rather than timed out. */
  | { readonly type: "joined"; readonly id: string; readonly incarnation: number; readonly ready: boolean; readonly at: number }
  | { readonly type: "view"; readonly at: number; readonly members: readonly string[] }
  | { readonly type: "master"; readonly at: number; readonly master: string }
  | { readonly type: "acked"; readonly key: string; readonly at: number }
  | { readonly type: "writeFailed"; readonly key: string; readonly at: number; readonly error: string }
  | { readonly type: "error"; readonly message: string };

const now = () => performance.timeOrigin + performance.now();
const print = (event: IdentityMemberEvent) => console.log(JSON.stringify(event));
const describe = (error: unknown) => (error instanceof Error ? `${(error as { code?: string }).code ?? error.name}: ${error.message}` : String(error));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const PACE_MS = 20;

async function main(): Promise<void> {
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as IdentityMemberConfig;
  const channel = new ClusterChannel({
    ...memberChannelOptions(config, host),
    security: { keys: [{ id: 1, secret: config.secret }], identity: config.identity },
    state: { quorum: true, minimumMembers: 2 },
  });
  const giveUp = limitLifetime(host, channel, config);
  channel.on("error", (event) => print({ type: "error", message: `${event.stage}: ${describe(event.error)}` }));
  channel.on("masterChange", ({ master }) => print({ type: "master", at: now(), master: master.name }));
  channel.on("viewChange", ({ view }) => print({ type: "view", at: now(), members: view.members.map((m) => m.name) }));
  let ready = true;
  try {
    await channel.join({ timeoutMs: config.joinTimeoutMs });
  } catch (error) {
    if ((error as { code?: string }).code !== "TIMEOUT" || channel.state !== "started") {
      print({ type: "error", message: `join: ${describe(error)}` });
      await giveUp();
    }
    ready = false;
  }
  print({ type: "joined", id: channel.id, incarnation: channel.incarnation, ready, at: now() });
  for (let n = 0; ; n++) {
    const key = `w/${config.name}/${n}`;
    try {
      await channel.map.put(key, new TextEncoder().encode(`v${n}`), { timeoutMs: config.operationTimeoutMs });
      print({ type: "acked", key, at: now() });
    } catch (error) {
      print({ type: "writeFailed", key, at: now(), error: describe(error) });
    }
    await sleep(PACE_MS);
  }
}

await main();
