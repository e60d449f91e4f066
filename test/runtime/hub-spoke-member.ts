/**
 * A small hub-and-spoke application written once against activeblaze/jms, run as one member per
 * process under Node (tsx), Bun or Deno, for test/udp-jms.test.ts. Usage:
 * `<runtime> hub-spoke-member.ts '<HubSpokeConfig as JSON>'`; it prints one JSON event a line.
 *
 * - The shop sends `orders` orders to the queue "orders", asks the queue "stock" (request/reply through
 *   a temporary queue), follows the price topic "prices.>" and collects the queue "shipped".
 * - A worker takes one order at a time in a transaction: it publishes a price on "prices.<name>",
 *   sends the shipment to "shipped" and commits both with the order's acknowledgement; it also answers
 *   stock requests. With `holdFirst` it stops (without committing) at its first order, to be killed.
 */
import { ClusterChannel } from "../../src/cluster/cluster-channel.ts";
import { createConnectionFactory, type Message, type TextMessage } from "../../src/jms/index.ts";
import { detectRuntime, limitLifetime, type MemberBaseConfig, memberChannelOptions } from "./runtime-host.ts";

export interface HubSpokeConfig extends MemberBaseConfig {
  readonly role: "shop" | "worker";
  /** The shop: how many orders, and how many members to wait for first. */
  readonly orders?: number;
  readonly members?: number;
  /** A worker: hold its first order without committing (the test kills it then). */
  readonly holdFirst?: boolean;
}

export type HubSpokeEvent =
  | { readonly type: "joined"; readonly runtime: string; readonly name: string }
  | { readonly type: "holding"; readonly order: string }
  | { readonly type: "processed"; readonly order: string; readonly deliveryCount: number }
  | { readonly type: "reply"; readonly text: string }
  | { readonly type: "shipped"; readonly order: string; readonly worker: string; readonly runtime: string; readonly redelivered: boolean; readonly deliveryCount: number }
  | { readonly type: "done"; readonly shipped: number; readonly prices: number; readonly duplicates: number };

const host = await detectRuntime();
const config = JSON.parse(host.args[0]!) as HubSpokeConfig;
const print = (event: HubSpokeEvent) => console.log(JSON.stringify(event));

const channel = new ClusterChannel(memberChannelOptions(config, host));
const giveUp = limitLifetime(host, channel, config);
try {
  await channel.init();
  await channel.join({ timeoutMs: 30_000 });
  const factory = await createConnectionFactory({ channel });
  factory.on("error", ({ error }) => console.error(`error: ${error.code} ${error.message}`));
  print({ type: "joined", runtime: host.name, name: config.name });
  if (config.role === "worker") await work(factory);
  else await shop(factory);
} catch (error) {
  console.error(error);
  await giveUp();
}

async function work(factory: Awaited<ReturnType<typeof createConnectionFactory>>): Promise<void> {
  const stock = factory.createContext();
  const replies = stock.createProducer();
  stock.createConsumer(stock.queue("stock")).setMessageListener(async (request) => {
    await replies.setJMSCorrelationID(request.JMSCorrelationID).send(request.JMSReplyTo!, `in stock at ${config.name}`);
  });
  const context = factory.createContext({ sessionMode: "SESSION_TRANSACTED" });
  const orders = context.createConsumer(context.queue("orders"), { prefetch: 1 });
  const producer = context.createProducer();
  for await (const order of orders) {
    const id = (order as TextMessage).text!;
    if (config.holdFirst === true) {
      print({ type: "holding", order: id });
      await new Promise(() => undefined);
    }
    const deliveryCount = order.getIntProperty("JMSXDeliveryCount");
    await producer.send(context.topic(`prices.${config.name}`), `${id} priced`);
    const shipment = context.createTextMessage(id);
    shipment.setStringProperty("worker", config.name).setStringProperty("runtime", host.name).setIntProperty("count", deliveryCount);
    await producer.send(context.queue("shipped"), shipment);
    await context.commit();
    print({ type: "processed", order: id, deliveryCount });
  }
}

async function shop(factory: Awaited<ReturnType<typeof createConnectionFactory>>): Promise<void> {
  while (channel.getMembers("g").length < (config.members ?? 1)) await new Promise((resolve) => setTimeout(resolve, 50));
  const context = factory.createContext();
  let prices = 0;
  context.createConsumer(context.topic("prices.>")).setMessageListener(() => {
    prices++;
  });
  const reply = await context.request(context.queue("stock"), "widgets?", { timeoutMs: 20_000 });
  print({ type: "reply", text: (reply as TextMessage).text! });
  const producer = context.createProducer();
  const total = config.orders ?? 10;
  for (let n = 0; n < total; n++) await producer.send(context.queue("orders"), `order-${n}`);
  const seen = new Map<string, number>();
  const shipped = context.createConsumer(context.queue("shipped"));
  for await (const message of shipped) {
    const order = (message as TextMessage).text!;
    seen.set(order, (seen.get(order) ?? 0) + 1);
    print(shipment(order, message));
    if (seen.size === total) break;
  }
  // Late duplicates would show up here.
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  let duplicates = [...seen.values()].reduce((sum, n) => sum + n - 1, 0);
  for (let extra = shipped.receiveNoWait(); extra !== undefined; extra = shipped.receiveNoWait()) duplicates++;
  print({ type: "done", shipped: seen.size, prices, duplicates });
}

function shipment(order: string, message: Message): HubSpokeEvent {
  return {
    type: "shipped",
    order,
    worker: message.getStringProperty("worker") ?? "",
    runtime: message.getStringProperty("runtime") ?? "",
    redelivered: message.getIntProperty("count") > 1,
    deliveryCount: message.getIntProperty("count"),
  };
}
