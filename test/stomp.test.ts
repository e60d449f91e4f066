/**
 * The STOMP gateway with STOMP clients written elsewhere: @stomp/stompjs over WebSocket (with the `ws`
 * package as Node's WebSocket) and stompit over TCP, against two members on loopback UDP, each running
 * a gateway. Queues, topics, ack and nack, transactions, interoperation with JMS-API code on the
 * members, failover to the other member's gateway, and refusals (bad frames, limits, failed logins).
 */
import { spawn } from "node:child_process";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { Client, type IMessage, type StompSubscription } from "@stomp/stompjs";
import stompit from "stompit";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { createClusterChannel } from "../src/cluster/cluster-channel.ts";
import { type ConnectionFactory, createConnectionFactory, TextMessage } from "../src/jms/index.ts";
import { createStompGateway, type StompGateway, type StompGatewayOptions } from "../src/stomp/index.ts";
import { FAST_TIMING, freshNetwork } from "./members.ts";

interface Member {
  readonly factory: ConnectionFactory;
  readonly gateway: StompGateway;
}

const open: Array<{ close(): Promise<void> | void }> = [];
afterEach(async () => {
  for (const thing of open.splice(0).reverse()) await thing.close();
});

async function members(count: number, gateway: StompGatewayOptions = {}): Promise<Member[]> {
  const network = freshNetwork("stomp");
  const started = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const channel = await createClusterChannel({
        cluster: network.cluster,
        name: `m${i}`,
        network: { type: "multicast", group: network.group, port: network.port },
        groups: ["g"],
        weight: count - i,
        ...FAST_TIMING,
      });
      await channel.join({ timeoutMs: 20_000 });
      const factory = await createConnectionFactory({ channel });
      const stomp = await createStompGateway(factory, { port: 0, websocketPort: 0, ...gateway });
      open.push({ close: async () => { await factory.close(); await channel.shutDown(); } });
      return { factory, gateway: stomp };
    }),
  );
  // Every member in one view, the map's election over.
  for (const { factory } of started) {
    const deadline = Date.now() + 20_000;
    while (factory.channel.getMembers("g").length < count) {
      if (Date.now() > deadline) throw new Error("the members did not form one view");
      await sleep(50);
    }
    await factory.channel.waitForElection({ timeoutMs: 20_000 });
  }
  return started;
}

/** A stompjs client over WebSocket, connected. */
async function webClient(url: string, extra: Partial<ConstructorParameters<typeof Client>[0]> = {}): Promise<Client> {
  const client = new Client({
    brokerURL: url,
    webSocketFactory: () => new WebSocket(url, ["v12.stomp", "v11.stomp", "v10.stomp"]),
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    ...extra,
  });
  const connected = new Promise<void>((resolve, reject) => {
    client.onConnect = () => resolve();
    client.onStompError = (frame) => reject(new Error(frame.headers["message"]));
  });
  client.activate();
  open.push({ close: () => client.deactivate() });
  await withTimeout(connected, 10_000, "stompjs CONNECTED");
  return client;
}

/** A stompit client over TCP, connected. */
async function tcpClient(port: number, headers: Record<string, string> = {}): Promise<stompit.Client> {
  const client = await new Promise<stompit.Client>((resolve, reject) => {
    stompit.connect({ host: "127.0.0.1", port, connectHeaders: { host: "/", "accept-version": "1.2", ...headers } }, (error, c) => (error ? reject(error) : resolve(c)));
  });
  client.on("error", () => undefined);
  open.push({ close: () => client.disconnect() });
  return client;
}

function stompitSend(client: stompit.Client, headers: Record<string, string>, body: string): void {
  const frame = client.send(headers);
  frame.write(body);
  frame.end();
}

function stompitReceipt(client: stompit.Client, headers: Record<string, string>, body: string): Promise<void> {
  return new Promise((resolve) => {
    const frame = client.send(headers, { onReceipt: () => resolve(), onError: () => undefined });
    frame.write(body);
    frame.end();
  });
}

/** Messages a stompjs subscription receives, awaited one by one. */
function inbox(client: Client, destination: string, headers: Record<string, string> = {}): { next(): Promise<IMessage>; subscription: StompSubscription } {
  const queued: IMessage[] = [];
  const waiters: Array<(m: IMessage) => void> = [];
  const subscription = client.subscribe(destination, (message) => {
    const waiter = waiters.shift();
    if (waiter !== undefined) waiter(message);
    else queued.push(message);
  }, headers);
  return {
    subscription,
    next: () => withTimeout(queued.length > 0 ? Promise.resolve(queued.shift()!) : new Promise<IMessage>((resolve) => waiters.push(resolve)), 10_000, `a message on ${destination}`),
  };
}

describe("the STOMP gateway with third-party clients", () => {
  it("moves messages through a queue and a topic between stompit (TCP), stompjs (WebSocket) and JMS code", async () => {
    const [a, b] = await members(2);
    const web = await webClient(`ws://127.0.0.1:${b!.gateway.websocketPort}/`);
    const tcp = await tcpClient(a!.gateway.port!);
    const queue = inbox(web, "/queue/orders", { ack: "client-individual" });
    const topic = inbox(web, "/topic/prices.eu");
    await sleep(300);

    // TCP client → queue → WebSocket client, headers and properties mapped.
    await stompitReceipt(tcp, { destination: "/queue/orders", receipt: "r1", "correlation-id": "c-7", type: "NewOrder", region: "EU", "content-type": "text/plain" }, "buy 10");
    const order = await queue.next();
    expect(order.body).toBe("buy 10");
    expect(order.headers["destination"]).toBe("/queue/orders");
    expect(order.headers["correlation-id"]).toBe("c-7");
    expect(order.headers["type"]).toBe("NewOrder");
    expect(order.headers["region"]).toBe("EU");
    expect(order.headers["message-id"]).toMatch(/^ID:[0-9a-f]{32}:/);
    order.ack();

    // JMS publisher → topic → WebSocket client.
    const jms = a!.factory.createContext();
    await jms.createProducer().setPriority(6).setProperty("bid", 12.5).send(jms.topic("prices.eu"), "ACME 12.50");
    const price = await topic.next();
    expect(price.body).toBe("ACME 12.50");
    expect(price.headers["priority"]).toBe("6");
    expect(price.headers["bid"]).toBe("12.5");

    // WebSocket client → queue → JMS consumer, with a selector on a STOMP header.
    const consumer = jms.createConsumer(jms.queue("invoices"), { selector: "region = 'EU'" });
    web.publish({ destination: "/queue/invoices", body: "invoice-us", headers: { region: "US" } });
    web.publish({ destination: "/queue/invoices", body: "invoice-eu", headers: { region: "EU" } });
    const invoice = await withTimeout(consumer.receive(), 10_000, "the EU invoice");
    expect((invoice as TextMessage).text).toBe("invoice-eu");
    expect(invoice.getStringProperty("region")).toBe("EU");

    // Binary bodies with NULs keep every byte.
    const bytes = inbox(web, "/queue/blobs");
    await sleep(200);
    const blob = new Uint8Array([0, 1, 0, 255, 0]);
    web.publish({ destination: "/queue/blobs", binaryBody: blob, headers: { "content-type": "application/octet-stream" } });
    const got = await bytes.next();
    expect(new Uint8Array(got.binaryBody)).toEqual(blob);
  });

  it("redelivers a NACKed message and one never acknowledged, and commits or aborts transactions", async () => {
    const [a] = await members(1);
    const web = await webClient(`ws://127.0.0.1:${a!.gateway.websocketPort}/`);
    const tcp = await tcpClient(a!.gateway.port!);
    const jobs = inbox(web, "/queue/jobs", { ack: "client" });
    await sleep(200);
    await stompitReceipt(tcp, { destination: "/queue/jobs", receipt: "r" }, "job-1");
    const first = await jobs.next();
    expect(first.headers["redelivered"]).toBeUndefined();
    first.nack();
    const again = await jobs.next();
    expect(again.body).toBe("job-1");
    expect(again.headers["redelivered"]).toBe("true");

    // A transaction: sends and the ack apply at COMMIT, together; ABORT drops sends.
    const jms = a!.factory.createContext();
    const results = jms.createConsumer(jms.queue("results"));
    const tx = web.begin();
    web.publish({ destination: "/queue/results", body: "result-1", headers: { transaction: tx.id } });
    again.ack({ transaction: tx.id });
    await sleep(300);
    expect(results.receiveNoWait()).toBeUndefined();
    tx.commit();
    expect((await withTimeout(results.receive(), 10_000, "the committed result") as TextMessage).text).toBe("result-1");
    const aborted = web.begin();
    web.publish({ destination: "/queue/results", body: "never", headers: { transaction: aborted.id } });
    aborted.abort();
    await sleep(500);
    expect(results.receiveNoWait()).toBeUndefined();
    expect(a!.factory.queueDepth("jobs")).toBe(0);

    // stompit: BEGIN, two SENDs, COMMIT.
    const transaction = tcp.begin("t1");
    stompitSend(tcp, { destination: "/queue/results", transaction: "t1" }, "tcp-1");
    stompitSend(tcp, { destination: "/queue/results", transaction: "t1" }, "tcp-2");
    await sleep(200);
    expect(results.receiveNoWait()).toBeUndefined();
    transaction.commit();
    const texts = [await withTimeout(results.receive(), 10_000, "tcp-1"), await withTimeout(results.receive(), 10_000, "tcp-2")].map((m) => (m as TextMessage).text);
    expect(texts).toEqual(["tcp-1", "tcp-2"]);
  });

  it("answers request/reply across STOMP and JMS through temporary queues", async () => {
    const [a] = await members(1);
    const web = await webClient(`ws://127.0.0.1:${a!.gateway.websocketPort}/`);
    // A STOMP service answering on /queue/echo.
    web.subscribe("/queue/echo", (request) => {
      web.publish({ destination: request.headers["reply-to"]!, body: `echo:${request.body}`, headers: { "correlation-id": request.headers["correlation-id"]! } });
    });
    await sleep(300);
    const jms = a!.factory.createContext();
    const reply = await withTimeout(jms.request(jms.queue("echo"), "ping", { timeoutMs: 5_000 }), 10_000, "the reply");
    expect((reply as TextMessage).text).toBe("echo:ping");

    // A STOMP client asking a JMS service, with its own /temp-queue name.
    const server = a!.factory.createContext();
    const replies = server.createProducer();
    server.createConsumer(server.queue("time")).setMessageListener(async (request) => {
      await replies.setJMSCorrelationID(request.JMSCorrelationID).send(request.JMSReplyTo!, "noon");
    });
    const answers = inbox(web, "/temp-queue/answers");
    await sleep(200);
    web.publish({ destination: "/queue/time", body: "what time?", headers: { "reply-to": "/temp-queue/answers", "correlation-id": "q-1" } });
    const answer = await answers.next();
    expect(answer.body).toBe("noon");
    expect(answer.headers["correlation-id"]).toBe("q-1");
  });

  it("fails a stompjs client over to another member's gateway: it subscribes again and gets what it had not acknowledged", async () => {
    const [a, b] = await members(2);
    const urls = [`ws://127.0.0.1:${b!.gateway.websocketPort}/`, `ws://127.0.0.1:${a!.gateway.websocketPort}/`];
    let attempt = 0;
    const received: IMessage[] = [];
    let connects = 0;
    const client = new Client({
      brokerURL: urls[0],
      webSocketFactory: () => new WebSocket(urls[Math.min(attempt++, 1)]!, ["v12.stomp"]),
      reconnectDelay: 200,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      onConnect: () => {
        connects++;
        client.subscribe("/queue/work", (message) => received.push(message), { ack: "client-individual" });
      },
    });
    client.activate();
    open.push({ close: () => client.deactivate() });
    await until(() => connects === 1, 10_000, "the first connection");
    await sleep(300);
    const jms = a!.factory.createContext();
    await jms.createProducer().send(jms.queue("work"), "unit-1");
    await until(() => received.length === 1, 10_000, "the first delivery");
    // The member of the first gateway leaves (its gateway closes with it) before the client acknowledged.
    await b!.factory.close();
    await b!.factory.channel.shutDown();
    await until(() => connects === 2 && received.length === 2, 20_000, "the redelivery through the other gateway");
    expect(received[1]!.body).toBe("unit-1");
    expect(received[1]!.headers["redelivered"]).toBe("true");
    received[1]!.ack();
    await until(() => a!.factory.queueDepth("work") === 0, 10_000, "the acknowledgement");
  });

  it("does not let a client that stops reading hold up the member: its topic subscription loses its oldest messages", async () => {
    const network = freshNetwork("stomp-slow");
    const channel = await createClusterChannel({ cluster: network.cluster, name: "m0", network: { type: "multicast", group: network.group, port: network.port }, groups: ["g"], loopback: false, ...FAST_TIMING });
    await channel.join({ timeoutMs: 20_000 });
    const factory = await createConnectionFactory({ channel, maxBufferedMessages: 500 });
    const gateway = await createStompGateway(factory, { port: 0, writeHighWaterBytes: 16 * 1024 });
    open.push({ close: async () => { await factory.close(); await channel.shutDown(); } });
    // A client that subscribes, then never reads again.
    const socket = tcpConnect(gateway.port!, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.write("CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:0\ndestination:/topic/firehose\n\n\0");
    await sleep(300);
    socket.pause();
    open.push({ close: () => void socket.destroy() });
    const context = factory.createContext();
    const watcher = context.createConsumer(context.topic("firehose"));
    let watched = 0;
    watcher.setMessageListener(() => {
      watched++;
    });
    const producer = context.createProducer();
    const body = "x".repeat(1024);
    for (let i = 0; i < 5_000; i++) await producer.send(context.topic("firehose"), body);
    await until(() => watched === 5_000, 20_000, "the member's own consumer to get every message");
    await until(() => factory.stats.slowConsumerDropped > 0, 10_000, "the slow subscription to drop messages");
    expect(factory.stats.slowConsumerDropped).toBeGreaterThan(3_000);
  });

  it("refuses bad frames and failed logins with an ERROR frame, keeps heart-beats, and holds limits", async () => {
    const [a] = await members(1, { authenticate: (login, passcode) => login === "ops" && passcode === "secret", heartbeatSendMs: 100, heartbeatReceiveMs: 100, maxHeaders: 8 });
    const port = a!.gateway.port!;
    expect((await raw(port, "CONNECT\naccept-version:1.2\nlogin:ops\npasscode:wrong\n\n\0")).join("")).toMatch(/^ERROR\n[\s\S]*login failed/);
    expect(await tcpClient(port, { login: "ops", passcode: "secret" })).toBeDefined();
    expect((await raw(port, "CONNECT\naccept-version:1.2\nlogin:ops\npasscode:secret\n\n\0SEND\n\nno destination\0")).join("")).toMatch(/^CONNECTED[\s\S]*ERROR\n[\s\S]*needs a "destination" header/);
    expect((await raw(port, "HELLO\n\n\0")).join("")).toMatch(/^ERROR\n[\s\S]*unknown command/);
    const headers = Array.from({ length: 20 }, (_, i) => `h${i}:v`).join("\n");
    expect((await raw(port, `CONNECT\naccept-version:1.2\nlogin:ops\npasscode:secret\n\n\0SEND\ndestination:/queue/x\n${headers}\n\nbody\0`)).join("")).toMatch(/ERROR\n[\s\S]*headers \(at most 8\)/);
    expect((await raw(port, "CONNECT\naccept-version:1.2\nlogin:ops\npasscode:secret\n\n\0SEND\ndestination:/queue/x\ncontent-length:99999999\n\n")).join("")).toMatch(/ERROR\n[\s\S]*exceeds the frame limit/);
    expect((await raw(port, "CONNECT\naccept-version:1.2\nlogin:ops\npasscode:secret\n\n\0SEND\ndestination:/queue/x\npersistent:true\n\nx\0")).join("")).toMatch(/ERROR\n[\s\S]*persistent delivery is not supported/);

    // Heart-beats: the server beats every 100 ms; a silent client is dropped after twice that.
    const chunks = await raw(port, "CONNECT\naccept-version:1.2\nlogin:ops\npasscode:secret\nheart-beat:100,100\n\n\0", 1_500);
    const text = chunks.join("");
    expect(text).toMatch(/^CONNECTED\n(.*\n)*heart-beat:100,100\n/);
    expect(text).toMatch(/\0\n+ERROR\n[\s\S]*no frame or heart-beat/);
    expect(a!.gateway.stats.errors).toBeGreaterThanOrEqual(6);
  });
});

describe("blaze gateway", () => {
  it("joins the cluster, serves STOMP with a login, and leaves on SIGTERM", async () => {
    const network = freshNetwork("blaze-gateway");
    const root = join(import.meta.dirname, "..");
    const child = spawn(process.execPath, [join(root, "node_modules", "tsx", "dist", "cli.mjs"), join(root, "src", "cli", "blaze.ts"), "gateway", "--port", "0", "--ws-port", "0", "--cluster", network.cluster, "--login", "ops", "--passcode", "pw"], {
      cwd: root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    open.push({ close: () => void (child.exitCode === null && process.kill(-child.pid!, "SIGKILL")) });
    let output = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    await until(() => output.includes('"listening"'), 30_000, `the gateway to listen (output: ${output})`);
    const listening = JSON.parse(output.split("\n").find((line) => line.includes('"listening"'))!) as { port: number; websocketPort: number };
    expect(listening.websocketPort).toBeGreaterThan(0);
    expect((await raw(listening.port, "CONNECT\naccept-version:1.2\nlogin:ops\npasscode:nope\n\n\0")).join("")).toMatch(/^ERROR/);
    const client = await tcpClient(listening.port, { login: "ops", passcode: "pw" });
    const received = new Promise<string>((resolve) => {
      client.subscribe({ destination: "/queue/cli", ack: "auto" }, (error, message) => {
        if (error) return;
        message.readString("utf-8", (_e, body) => resolve(body ?? ""));
      });
    });
    await stompitReceipt(client, { destination: "/queue/cli", receipt: "r" }, "through the CLI");
    expect(await withTimeout(received, 10_000, "the message")).toBe("through the CLI");
    client.disconnect();
    // To tsx, which passes it on to the program it runs.
    process.kill(child.pid!, "SIGTERM");
    expect(await withTimeout(exited, 20_000, "the gateway to exit"), output).toBe(0);
  });
});

/** Writes `input` on a raw TCP connection and collects what comes back until the server closes (or `maxMs`). */
function raw(port: number, input: string, maxMs = 5_000): Promise<string[]> {
  return new Promise((resolve) => {
    const chunks: string[] = [];
    const socket = tcpConnect(port, "127.0.0.1", () => socket.write(input));
    const timer = setTimeout(() => socket.destroy(), maxMs);
    socket.on("data", (chunk) => chunks.push(chunk.toString("utf8")));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(chunks);
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}
