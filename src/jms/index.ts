// activeblaze/jms: a JMS 2.0-shaped messaging API over the cluster (topics, replicated queues,
// selectors, transactions, request/reply). Re-exports only.
export { ConnectionFactory, createConnectionFactory } from "./connection-factory.ts";
export type { FactoryEvents, MessagingStats } from "./connection-factory.ts";
export { JMSContext } from "./context.ts";
export type { ContextEvents, RequestOptions } from "./context.ts";
export { JMSConsumer } from "./consumer.ts";
export type { MessageListener, ReceiveOptions } from "./consumer.ts";
export { JMSProducer } from "./producer.ts";
export { Destination, Queue, TemporaryQueue, TemporaryTopic, Topic, topicMatches } from "./destination.ts";
export { BytesMessage, MapMessage, Message, ObjectMessage, StreamMessage, TextMessage } from "./message.ts";
export type { DeliveryMode, PropertyType } from "./message.ts";
export { connectionFactoryOptionsSchema, SessionMode } from "./options.ts";
export type { ConnectionFactoryOptions, ConsumerOptions, ContextOptions, ResolvedFactoryOptions } from "./options.ts";
export { ORIGINAL_DESTINATION_PROPERTY } from "./queue-replica.ts";
export type { QueueStats } from "./queue-replica.ts";
export { parseSelector } from "./selector.ts";
export type { Selector, SelectorLookup, SelectorValue } from "./selector.ts";
