import { createClusterChannel } from "../cluster/cluster-channel.ts";
import { createConnectionFactory } from "../jms/connection-factory.ts";
import { createStompGateway } from "../stomp/gateway.ts";

export interface GatewayCommandOptions {
  readonly port: number;
  readonly websocketPort: number | undefined;
  readonly host: string;
  readonly cluster: string | undefined;
  readonly name: string;
  readonly group: string;
  readonly login: string | undefined;
  readonly passcode: string | undefined;
}

/**
 * `blaze gateway`: joins the cluster as a member (loopback multicast, the given cluster and group),
 * runs a STOMP gateway on it and prints one JSON line with the ports once listening; leaves on SIGINT
 * or SIGTERM.
 */
export async function runGateway(options: GatewayCommandOptions): Promise<number> {
  const channel = await createClusterChannel({ ...(options.cluster === undefined ? {} : { cluster: options.cluster }), name: options.name, groups: [options.group] });
  await channel.join();
  const factory = await createConnectionFactory({ channel });
  const { login, passcode } = options;
  const gateway = await createStompGateway(factory, {
    port: options.port,
    ...(options.websocketPort === undefined ? {} : { websocketPort: options.websocketPort }),
    host: options.host,
    ...(login === undefined ? {} : { authenticate: (l: string, p: string) => l === login && p === (passcode ?? "") }),
  });
  console.log(JSON.stringify({ type: "listening", member: channel.id, host: options.host, port: gateway.port, websocketPort: gateway.websocketPort ?? null }));
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await factory.close();
  await channel.shutDown();
  return 0;
}
