import { BlazeError } from "../errors.ts";
import type { ConnectionFactory } from "../jms/connection-factory.ts";
import type { JMSConsumer } from "../jms/consumer.ts";
import type { JMSContext } from "../jms/context.ts";
import { type Destination, Queue, TemporaryQueue, TemporaryTopic, Topic } from "../jms/destination.ts";
import { BytesMessage, MapMessage, type Message, ObjectMessage, StreamMessage, TextMessage } from "../jms/message.ts";
import type { TimerHandle } from "../transport/clock.ts";
import { encodeFrame, FrameParser, StompProtocolError, type StompFrame } from "./frame.ts";
import type { ResolvedGatewayOptions } from "./options.ts";

/** What a session writes to: a TCP socket or a WebSocket. */
export interface StompTransport {
  /** Writes bytes; false when the transport now buffers past its high-water mark. */
  write(bytes: Uint8Array): boolean;
  /** Bytes written and not yet sent. */
  readonly bufferedBytes: number;
  /** Calls `fn` once the buffer has drained. */
  onDrain(fn: () => void): void;
  pause(): void;
  resume(): void;
  /** Ends the connection (after what was written). */
  close(): void;
}

export interface SessionCounters {
  frames: number;
  errors: number;
  messagesIn: number;
  messagesOut: number;
}

type AckMode = "auto" | "client" | "client-individual";

interface Subscription {
  readonly id: string;
  readonly destinationHeader: string;
  readonly ack: AckMode;
  readonly context: JMSContext;
  readonly consumer: JMSConsumer;
  /** Delivered and not acknowledged, in delivery order, by ack id. */
  readonly unacked: Map<string, Message>;
}

const VERSIONS = ["1.2", "1.1", "1.0"];
const TEMP_QUEUE = "/temp-queue/";
/** STOMP headers that are not message properties. */
const RESERVED_HEADERS = new Set([
  "destination",
  "transaction",
  "receipt",
  "content-length",
  "message-id",
  "subscription",
  "ack",
  "correlation-id",
  "reply-to",
  "type",
  "priority",
  "expires",
  "persistent",
  "timestamp",
  "redelivered",
  "AMQ_SCHEDULED_DELAY",
]);
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * One STOMP 1.2 connection to the gateway: it speaks the protocol and maps it onto JMS contexts of the
 * member's connection factory (a context per subscription, one per transaction, one for the rest).
 * Frames are handled in order; a bad one gets an ERROR frame and the connection is closed.
 */
export class StompSession {
  readonly #factory: ConnectionFactory;
  readonly #transport: StompTransport;
  readonly #options: ResolvedGatewayOptions;
  readonly #counters: SessionCounters;
  readonly #parser: FrameParser;
  readonly #subscriptions = new Map<string, Subscription>();
  readonly #transactions = new Map<string, { context: JMSContext; nacked: Array<{ context: JMSContext; message: Message }> }>();
  readonly #temporaryQueues = new Map<string, TemporaryQueue>();
  readonly #destinations = new Map<string, Destination>();
  readonly #queue: StompFrame[] = [];
  #main: JMSContext | undefined;
  #connected = false;
  #closed = false;
  #working = false;
  #inFlightSends = 0;
  #nextAck = 0;
  #lastReceived: number;
  #heartbeatTimers: TimerHandle[] = [];
  #drainWaiters: Array<() => void> = [];
  readonly #onClose: () => void;

  constructor(factory: ConnectionFactory, transport: StompTransport, options: ResolvedGatewayOptions, counters: SessionCounters, onClose: () => void) {
    this.#factory = factory;
    this.#transport = transport;
    this.#options = options;
    this.#counters = counters;
    this.#onClose = onClose;
    this.#parser = new FrameParser({ maxFrameBytes: options.maxFrameBytes, maxHeaders: options.maxHeaders, maxHeaderBytes: options.maxHeaderBytes });
    this.#lastReceived = factory.clock.now();
    // A client that never sends CONNECT is cut off.
    this.#heartbeatTimers.push(
      factory.clock.setTimer(options.connectTimeoutMs, () => {
        if (!this.#connected) this.#error("no CONNECT frame in time");
      }),
    );
  }

  /** Bytes from the client. */
  receive(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#lastReceived = this.#factory.clock.now();
    let frames: StompFrame[];
    try {
      frames = this.#parser.push(bytes);
    } catch (error) {
      this.#error(error instanceof StompProtocolError ? error.message : "malformed frame");
      return;
    }
    for (const frame of frames) {
      if (frame.command === "") continue;
      this.#counters.frames++;
      this.#queue.push(frame);
    }
    if (this.#queue.length > this.#options.maxQueuedFrames) this.#transport.pause();
    void this.#work();
  }

  /** The transport closed: everything the connection held is given back. */
  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#heartbeatTimers) timer.cancel();
    for (const { context } of this.#transactions.values()) void context.close();
    for (const subscription of this.#subscriptions.values()) void subscription.context.close();
    void this.#main?.close();
    this.#transactions.clear();
    this.#subscriptions.clear();
    for (const wake of this.#drainWaiters.splice(0)) wake();
    this.#onClose();
  }

  async #work(): Promise<void> {
    if (this.#working) return;
    this.#working = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const frame = this.#queue.shift()!;
        try {
          await this.#handle(frame);
        } catch (error) {
          const message = error instanceof BlazeError ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
          this.#error(message, frame.headers.get("receipt"));
          return;
        }
        if (this.#queue.length <= this.#options.maxQueuedFrames / 2) this.#transport.resume();
      }
    } finally {
      this.#working = false;
    }
  }

  async #handle(frame: StompFrame): Promise<void> {
    const { command, headers } = frame;
    if (!this.#connected) {
      if (command !== "CONNECT" && command !== "STOMP") throw new StompProtocolError(`${command} before CONNECT`);
      return this.#connect(frame);
    }
    switch (command) {
      case "CONNECT":
      case "STOMP":
        throw new StompProtocolError("already connected");
      case "SEND":
        await this.#send(frame);
        return;
      case "SUBSCRIBE":
        this.#subscribe(frame);
        break;
      case "UNSUBSCRIBE": {
        const id = required(headers, "id");
        const subscription = this.#subscriptions.get(id);
        if (subscription === undefined) throw new StompProtocolError(`no subscription "${id}"`);
        this.#subscriptions.delete(id);
        await subscription.context.close();
        break;
      }
      case "ACK":
      case "NACK":
        await this.#acknowledge(frame);
        return;
      case "BEGIN": {
        const id = required(headers, "transaction");
        if (this.#transactions.has(id)) throw new StompProtocolError(`transaction "${id}" has already begun`);
        if (this.#transactions.size >= this.#options.maxTransactions) throw new StompProtocolError(`at most ${this.#options.maxTransactions} transactions at once`);
        this.#transactions.set(id, { context: this.#factory.createContext({ sessionMode: "SESSION_TRANSACTED" }), nacked: [] });
        break;
      }
      case "COMMIT":
      case "ABORT": {
        const id = required(headers, "transaction");
        const transaction = this.#transactions.get(id);
        if (transaction === undefined) throw new StompProtocolError(`no transaction "${id}"`);
        this.#transactions.delete(id);
        try {
          // ABORT rolls back the transaction's ACKs (those messages are redelivered); NACKs redeliver either way.
          if (command === "COMMIT") await transaction.context.commit();
          else await transaction.context.rollback();
          for (const { context, message } of transaction.nacked) context.redeliver([message]);
        } finally {
          await transaction.context.close();
        }
        break;
      }
      case "DISCONNECT":
        this.#receipt(headers);
        this.#closeAfterWrites();
        return;
    }
    this.#receipt(headers);
  }

  async #connect(frame: StompFrame): Promise<void> {
    const { headers } = frame;
    const accepted = (headers.get("accept-version") ?? "1.0").split(",").map((v) => v.trim());
    const version = VERSIONS.find((v) => accepted.includes(v));
    if (version === undefined) throw new StompProtocolError(`no supported version in accept-version "${headers.get("accept-version")}" (this server speaks ${VERSIONS.join(", ")})`);
    if (this.#options.authenticate !== undefined) {
      let allowed = false;
      try {
        allowed = await this.#options.authenticate(headers.get("login") ?? "", headers.get("passcode") ?? "");
      } catch {
        allowed = false;
      }
      if (!allowed) throw new StompProtocolError("login failed");
    }
    const [clientSend, clientReceive] = heartBeat(headers.get("heart-beat"));
    const serverSend = this.#options.heartbeatSendMs;
    const serverReceive = this.#options.heartbeatReceiveMs;
    const sendEvery = serverSend === 0 || clientReceive === 0 ? 0 : Math.max(serverSend, clientReceive);
    const expectEvery = serverReceive === 0 || clientSend === 0 ? 0 : Math.max(serverReceive, clientSend);
    this.#connected = true;
    this.#main = this.#factory.createContext();
    this.#write(
      encodeFrame("CONNECTED", [
        ["version", version],
        ["heart-beat", `${sendEvery},${expectEvery}`],
        ["server", "activeblaze"],
        ["session", `${this.#factory.memberId}/${this.#nextAck++}`],
      ]),
    );
    const clock = this.#factory.clock;
    if (sendEvery > 0) {
      const beat = () => {
        if (this.#closed) return;
        if (this.#transport.bufferedBytes === 0) this.#transport.write(encoder.encode("\n"));
        this.#heartbeatTimers.push(clock.setTimer(sendEvery, beat));
      };
      this.#heartbeatTimers.push(clock.setTimer(sendEvery, beat));
    }
    if (expectEvery > 0) {
      // Some tolerance, as STOMP 1.2 asks: the client is given up after twice its interval of silence.
      const check = () => {
        if (this.#closed) return;
        if (clock.now() - this.#lastReceived > 2 * expectEvery) {
          this.#error(`no frame or heart-beat from the client for ${2 * expectEvery} ms`);
          return;
        }
        this.#heartbeatTimers.push(clock.setTimer(expectEvery, check));
      };
      this.#heartbeatTimers.push(clock.setTimer(expectEvery, check));
    }
  }

  async #send(frame: StompFrame): Promise<void> {
    const { headers } = frame;
    const destination = this.#destination(required(headers, "destination"), "send");
    if (headers.get("persistent") === "true") {
      throw new StompProtocolError("persistent delivery is not supported (messages are NON_PERSISTENT: replicated in memory across the cluster)");
    }
    const message = this.#toMessage(frame);
    const transactionId = headers.get("transaction");
    const context = transactionId === undefined ? this.#main! : this.#transaction(transactionId).context;
    const producer = context.createProducer();
    const priority = headers.get("priority");
    if (priority !== undefined) producer.setPriority(integer(priority, "priority"));
    const expires = headers.get("expires");
    if (expires !== undefined && expires !== "0") producer.setTimeToLive(Math.max(1, integer(expires, "expires") - Date.now()));
    const delay = headers.get("AMQ_SCHEDULED_DELAY");
    if (delay !== undefined) producer.setDeliveryDelay(integer(delay, "AMQ_SCHEDULED_DELAY"));
    this.#counters.messagesIn++;
    const sent = producer.send(destination, message);
    const receipt = headers.get("receipt");
    if (receipt !== undefined) {
      await sent;
      this.#receipt(headers);
      return;
    }
    // Without a receipt the next frame need not wait; a failure still ends the connection with an ERROR.
    this.#inFlightSends++;
    if (this.#inFlightSends >= this.#options.maxInFlightSends) this.#transport.pause();
    sent.then(
      () => this.#sendSettled(),
      (error: unknown) => {
        this.#sendSettled();
        this.#error(error instanceof BlazeError ? `${error.code}: ${error.message}` : String(error));
      },
    );
  }

  #sendSettled(): void {
    this.#inFlightSends--;
    if (this.#inFlightSends < this.#options.maxInFlightSends / 2 && this.#queue.length <= this.#options.maxQueuedFrames / 2) this.#transport.resume();
  }

  #subscribe(frame: StompFrame): void {
    const { headers } = frame;
    const id = required(headers, "id");
    if (this.#subscriptions.has(id)) throw new StompProtocolError(`subscription "${id}" exists already`);
    if (this.#subscriptions.size >= this.#options.maxSubscriptions) throw new StompProtocolError(`at most ${this.#options.maxSubscriptions} subscriptions per connection`);
    const destinationHeader = required(headers, "destination");
    const destination = this.#destination(destinationHeader, "subscribe");
    const ack = (headers.get("ack") ?? "auto") as AckMode;
    if (ack !== "auto" && ack !== "client" && ack !== "client-individual") throw new StompProtocolError(`ack "${String(ack)}" is none of auto, client, client-individual`);
    const selector = headers.get("selector");
    // Temporary queues belong to the connection's main context; other subscriptions get their own.
    const temporary = destination instanceof TemporaryQueue;
    const context = temporary ? this.#main! : this.#factory.createContext({ sessionMode: ack === "auto" ? "AUTO_ACKNOWLEDGE" : "INDIVIDUAL_ACKNOWLEDGE" });
    const consumer = context.createConsumer(destination, { selector });
    const subscription: Subscription = { id, destinationHeader, ack: temporary ? "auto" : ack, context, consumer, unacked: new Map() };
    this.#subscriptions.set(id, subscription);
    consumer.setMessageListener((message) => this.#deliver(subscription, message));
  }

  /** Writes a MESSAGE frame; waits (holding the subscription's next deliveries back) while the client is slow to read. */
  #deliver(subscription: Subscription, message: Message): Promise<void> | undefined {
    if (this.#closed) throw new BlazeError("CLOSED", "the STOMP connection closed");
    const ackId = `${++this.#nextAck}`;
    if (subscription.ack !== "auto") subscription.unacked.set(ackId, message);
    this.#counters.messagesOut++;
    const { headers, body } = this.#toFrameParts(message, subscription, ackId);
    const full = !this.#write(encodeFrame("MESSAGE", headers, body));
    // Only a full socket makes the next delivery wait (a promise only then: no turn of the loop per message).
    if (full && !this.#closed) return new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    return undefined;
  }

  async #acknowledge(frame: StompFrame): Promise<void> {
    const { command, headers } = frame;
    const id = required(headers, "id");
    const subscription = [...this.#subscriptions.values()].find((s) => s.unacked.has(id));
    if (subscription === undefined) throw new StompProtocolError(`${command} of "${id}": no such message awaits acknowledgement`);
    // client mode: cumulative (this message and every earlier one of the subscription).
    const messages: Message[] = [];
    for (const [ackId, message] of subscription.unacked) {
      if (subscription.ack === "client" || ackId === id) {
        messages.push(message);
        subscription.unacked.delete(ackId);
      }
      if (ackId === id) break;
    }
    const transactionId = headers.get("transaction");
    if (transactionId !== undefined) {
      const transaction = this.#transaction(transactionId);
      if (command === "ACK") for (const message of messages) transaction.context.adopt(message);
      else for (const message of messages) transaction.nacked.push({ context: subscription.context, message });
    } else if (command === "ACK") {
      await Promise.all(messages.map((message) => message.acknowledge()));
    } else {
      subscription.context.redeliver(messages);
    }
    this.#receipt(headers);
  }

  #transaction(id: string): { context: JMSContext; nacked: Array<{ context: JMSContext; message: Message }> } {
    const transaction = this.#transactions.get(id);
    if (transaction === undefined) throw new StompProtocolError(`no transaction "${id}" (BEGIN it first)`);
    return transaction;
  }

  #destination(header: string, use: "send" | "subscribe"): Destination {
    if (header.startsWith("/topic/") || header.startsWith("/queue/")) {
      let destination = this.#destinations.get(header);
      if (destination === undefined) {
        destination = header.startsWith("/topic/") ? new Topic(header.slice(7)) : new Queue(header.slice(7));
        // Destinations are values: a connection's are parsed once (a bounded number of them).
        if (this.#destinations.size >= 1024) this.#destinations.clear();
        this.#destinations.set(header, destination);
      }
      return destination;
    }
    if (header.startsWith(TEMP_QUEUE)) {
      const name = header.slice(TEMP_QUEUE.length);
      const own = this.#temporaryQueues.get(name);
      if (own !== undefined) return own;
      // Another connection's (or a JMS context's) temporary queue, named in full: it can be sent to.
      if (/^[0-9a-f]{32}\//.test(name)) {
        if (use === "subscribe") throw new StompProtocolError(`${header} belongs to another connection`);
        return new TemporaryQueue(name);
      }
      const queue = this.#main!.createTemporaryQueue();
      this.#temporaryQueues.set(name, queue);
      return queue;
    }
    throw new StompProtocolError(`destination "${header}" is none of /topic/…, /queue/…, /temp-queue/…`);
  }

  /** A JMS message from a SEND frame: a TextMessage, or a BytesMessage when a content-length says the body is bytes. */
  #toMessage(frame: StompFrame): Message {
    const { headers, body } = frame;
    // A text content type, or none with a UTF-8 body: a TextMessage; any other content type, or bytes
    // that are not UTF-8: a BytesMessage (content-length alone says nothing: most clients always send it).
    const type = headers.get("content-type");
    const textual = type === undefined || type.startsWith("text/") || type.startsWith("application/json");
    let text: string | undefined;
    if (textual) {
      try {
        text = decoder.decode(body);
      } catch {
        text = undefined;
      }
    }
    const message: Message = text === undefined ? new BytesMessage(body) : new TextMessage(text);
    const correlation = headers.get("correlation-id");
    if (correlation !== undefined) message.JMSCorrelationID = correlation;
    const type_ = headers.get("type");
    if (type_ !== undefined) message.JMSType = type_;
    const replyTo = headers.get("reply-to");
    if (replyTo !== undefined) message.JMSReplyTo = this.#destination(replyTo, "send");
    for (const [name, value] of headers) {
      if (RESERVED_HEADERS.has(name)) continue;
      try {
        message.setStringProperty(name, value);
      } catch {
        // A header no JMS property can be named after (a selector keyword, a JMS header name): not carried.
      }
    }
    return message;
  }

  #toFrameParts(message: Message, subscription: Subscription, ackId: string): { headers: Array<[string, string]>; body: Uint8Array } {
    const headers: Array<[string, string]> = [
      ["subscription", subscription.id],
      ["message-id", message.JMSMessageID ?? ackId],
      ["destination", destinationHeader(message.JMSDestination) ?? subscription.destinationHeader],
    ];
    if (subscription.ack !== "auto") headers.push(["ack", ackId]);
    if (message.JMSCorrelationID !== null) headers.push(["correlation-id", message.JMSCorrelationID]);
    const replyTo = destinationHeader(message.JMSReplyTo);
    if (replyTo !== undefined) headers.push(["reply-to", replyTo]);
    if (message.JMSType !== null) headers.push(["type", message.JMSType]);
    headers.push(["priority", String(message.JMSPriority)]);
    headers.push(["timestamp", String(message.JMSTimestamp)]);
    headers.push(["expires", String(message.JMSExpiration)]);
    headers.push(["persistent", "false"]);
    if (message.JMSRedelivered) headers.push(["redelivered", "true"]);
    const names = new Set(headers.map(([name]) => name));
    for (const name of message.getPropertyNames()) {
      if (names.has(name) || name === "content-length") continue;
      headers.push([name, message.getStringProperty(name) ?? ""]);
    }
    let body: Uint8Array;
    let contentType: string | undefined;
    if (message instanceof TextMessage) {
      body = encoder.encode(message.text ?? "");
      contentType = "text/plain;charset=utf-8";
    } else if (message instanceof BytesMessage) {
      body = message.bytes ?? new Uint8Array(0);
      contentType = "application/octet-stream";
    } else if (message instanceof MapMessage) {
      body = encoder.encode(JSON.stringify(message.map.toJSON(), (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value)));
      contentType = "application/json";
    } else if (message instanceof ObjectMessage || message instanceof StreamMessage) {
      body = encoder.encode(JSON.stringify(message.getBody(), (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value)));
      contentType = "application/json";
    } else body = new Uint8Array(0);
    if (!names.has("content-type") && !message.propertyExists("content-type") && contentType !== undefined) headers.push(["content-type", contentType]);
    return { headers, body };
  }

  #receipt(headers: ReadonlyMap<string, string>): void {
    const receipt = headers.get("receipt");
    if (receipt !== undefined) this.#write(encodeFrame("RECEIPT", [["receipt-id", receipt]]));
  }

  /** An ERROR frame (with the receipt it answers), then the connection closes. */
  #error(message: string, receipt?: string): void {
    if (this.#closed) return;
    this.#counters.errors++;
    const headers: Array<[string, string]> = [["message", message.split("\n")[0]!.slice(0, 256)]];
    if (receipt !== undefined) headers.push(["receipt-id", receipt]);
    this.#write(encodeFrame("ERROR", [...headers, ["content-type", "text/plain"]], encoder.encode(message)));
    this.#closeAfterWrites();
  }

  #closeAfterWrites(): void {
    this.#transport.close();
    this.closed();
  }

  #write(bytes: Uint8Array): boolean {
    if (this.#closed) return false;
    const fine = this.#transport.write(bytes);
    if (!fine) this.#transport.onDrain(() => this.#drained());
    return fine;
  }

  #drained(): void {
    for (const wake of this.#drainWaiters.splice(0)) wake();
  }
}

function required(headers: ReadonlyMap<string, string>, name: string): string {
  const value = headers.get(name);
  if (value === undefined || value === "") throw new StompProtocolError(`the frame needs a "${name}" header`);
  return value;
}

function integer(text: string, name: string): number {
  if (!/^-?\d{1,15}$/.test(text)) throw new StompProtocolError(`header "${name}" is not an integer: "${text.slice(0, 32)}"`);
  return Number(text);
}

function heartBeat(header: string | undefined): [number, number] {
  if (header === undefined) return [0, 0];
  const match = /^\s*(\d{1,9})\s*,\s*(\d{1,9})\s*$/.exec(header);
  if (match === null) throw new StompProtocolError(`heart-beat "${header.slice(0, 32)}" is not "<send ms>,<receive ms>"`);
  return [Number(match[1]), Number(match[2])];
}

function destinationHeader(destination: Destination | null): string | undefined {
  if (destination === null) return undefined;
  if (destination instanceof Topic) return `/topic/${destination.name}`;
  if (destination instanceof Queue) return `/queue/${destination.name}`;
  if (destination instanceof TemporaryQueue) return `${TEMP_QUEUE}${destination.name}`;
  if (destination instanceof TemporaryTopic) return `/temp-topic/${destination.name}`;
  return undefined;
}
