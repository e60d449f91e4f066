/**
 * One member of a group over real UDP, for test/udp-group.test.ts. The same file runs under Node (through
 * tsx), Bun and Deno (`--unstable-net`): it picks its runtime's adapter, joins group "g" on the given
 * multicast group, port and cluster, and prints one JSON line (a {@link GroupMemberEvent}) per event:
 * its id once joined, every view it installs, and, when asked, the outcome of requests and point-to-point
 * messages to every other member and the queue messages it consumes.
 * Usage: `<runtime> group-member.ts '<GroupMemberConfig as JSON>'`.
 *
 * It always answers requests on inbox "echo" (with `<its name>:<the request's text>`) and reports what
 * arrives on inbox "p2p". It exits on its own after `lifetimeMs`, whatever happens, so that it never
 * outlives a test that lost track of it.
 */
import { GroupChannel } from "../../src/group/group-channel.ts";
import type { View } from "../../src/group/view.ts";
import { detectRuntime, limitLifetime, type MemberBaseConfig, memberChannelOptions } from "./runtime-host.ts";

export interface GroupMemberConfig extends MemberBaseConfig {
  /**
   * Once a view with this many members is installed, send one request (inbox "echo") and one message
   * (inbox "p2p") to every other member of it, and report both; then print `{ type: "exchanged" }`.
   */
  readonly exchangeAt?: number;
  /** Consume this queue, reporting every message. */
  readonly consumeQueue?: string;
  /** Once the exchange is done, send this many messages to `consumeQueue`'s queue and report their outcome. */
  readonly produceToQueue?: number;
}

/** What a member prints, one JSON object a line. `at` is wall-clock ms (with a fraction), comparable across processes. */
export type GroupMemberEvent =
  | { readonly type: "joined"; readonly runtime: string; readonly name: string; readonly id: string; readonly at: number }
  | {
      readonly type: "view";
      readonly at: number;
      readonly installer: string;
      readonly counter: number;
      /** Member names in view order. */
      readonly members: readonly string[];
      readonly ids: readonly string[];
      readonly coordinator: string;
    }
  | { readonly type: "suspect"; readonly at: number; readonly member: string }
  | { readonly type: "reply"; readonly to: string; readonly ok: boolean; readonly text: string; readonly rttMs: number }
  | { readonly type: "sent"; readonly to: string; readonly ok: boolean; readonly error?: string }
  | { readonly type: "p2p"; readonly from: string; readonly text: string }
  | { readonly type: "exchanged" }
  | { readonly type: "consumed"; readonly queue: string; readonly from: string; readonly text: string }
  | { readonly type: "produced"; readonly ok: number; readonly failed: number; readonly errors: readonly string[] }
  | { readonly type: "error"; readonly message: string };


const now = () => performance.timeOrigin + performance.now();
const print = (event: GroupMemberEvent) => console.log(JSON.stringify(event));
const describe = (error: unknown) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));

async function main(): Promise<void> {
  const host = await detectRuntime();
  const config = JSON.parse(host.args[0] ?? "") as GroupMemberConfig;
  const channel = new GroupChannel({ ...memberChannelOptions(config, host) });
  const giveUp = limitLifetime(host, channel, config);
  channel.on("error", (event) => print({ type: "error", message: `${event.stage}: ${describe(event.error)}` }));

  const nameOf = (id: string) => channel.getMemberById(id)?.name ?? id.slice(0, 8);
  channel.onInbox("echo", (message) => message.reply(new TextEncoder().encode(`${config.name}:${message.text()}`)));
  channel.onInbox("p2p", (message) => print({ type: "p2p", from: message.sender?.name ?? nameOf(message.senderId), text: message.text() }));
  if (config.consumeQueue !== undefined) {
    const queue = config.consumeQueue;
    channel.consumeQueue(queue, (message) => print({ type: "consumed", queue, from: message.sender?.name ?? nameOf(message.senderId), text: message.text() }));
  }

  let exchanged = false;
  const exchange = async (view: View) => {
    const others = view.members.filter((m) => m.id !== channel.id);
    await Promise.all(
      others.map(async (member) => {
        const started = performance.now();
        try {
          const reply = await channel.request(member, new TextEncoder().encode(`ping from ${config.name}`), { inbox: "echo", timeoutMs: 5_000 });
          print({ type: "reply", to: member.name, ok: true, text: reply.text(), rttMs: performance.now() - started });
        } catch (error) {
          print({ type: "reply", to: member.name, ok: false, text: describe(error), rttMs: performance.now() - started });
        }
        try {
          await channel.send(member, new TextEncoder().encode(`hello from ${config.name}`), { inbox: "p2p" });
          print({ type: "sent", to: member.name, ok: true });
        } catch (error) {
          print({ type: "sent", to: member.name, ok: false, error: describe(error) });
        }
      }),
    );
    if (config.produceToQueue !== undefined && config.consumeQueue !== undefined) {
      const outcomes = await Promise.allSettled(
        Array.from({ length: config.produceToQueue }, (_, i) => channel.sendToQueue(config.consumeQueue!, new TextEncoder().encode(`job ${i}`), { timeoutMs: 5_000 })),
      );
      const errors = outcomes.flatMap((o) => (o.status === "rejected" ? [describe(o.reason)] : []));
      print({ type: "produced", ok: outcomes.length - errors.length, failed: errors.length, errors });
    }
    print({ type: "exchanged" });
  };

  channel.on("viewChange", ({ view }) => {
    print({
      type: "view",
      at: now(),
      installer: view.id.installer,
      counter: view.id.counter,
      members: view.members.map((m) => m.name),
      ids: view.members.map((m) => m.id),
      coordinator: view.coordinator.name,
    });
    if (config.exchangeAt !== undefined && !exchanged && view.members.length === config.exchangeAt) {
      exchanged = true;
      exchange(view).catch((error: unknown) => print({ type: "error", message: `exchange: ${describe(error)}` }));
    }
  });
  channel.on("suspect", ({ member }) => print({ type: "suspect", at: now(), member: member.name }));

  try {
    await channel.join({ timeoutMs: Math.max(10_000, 10 * config.discoveryTimeoutMs) });
    print({ type: "joined", runtime: host.name, name: config.name, id: channel.id, at: now() });
  } catch (error) {
    print({ type: "error", message: `join: ${describe(error)}` });
    await giveUp();
  }
}

await main();
