/**
 * Many hosts on one machine: a LAN of Linux network namespaces. Each host is a namespace of its own
 * with one link (`lan0`, a veth pair) to a bridge that lives in a namespace of the network's own, an
 * address 10.77.0.<index + 1>/24 and a route for multicast over its link; a member runs in it through
 * `ip netns exec` (`host.within`). Links can be cut and healed, the hosts split into sides, and loss
 * (and delay, with netem) set per link in the kernel where it allows.
 *
 * Nothing is created outside the network's namespaces: the root namespace's interfaces, routes and
 * firewall are never touched (veth pairs are created straight into their namespaces). Deleting the
 * namespaces deletes everything; `destroy()` does it, an exit hook does it if the process ends first,
 * and `create()` first removes what runs of processes that no longer exist left behind.
 * Requires root and iproute2 (`ip`); {@link hostNetworkUnsupported} says why not otherwise.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

/** Every namespace a run makes is named `<PREFIX>-<pid>-<run>-<br | h<i>>`: stale ones are known by their pid. */
const PREFIX = "abhost";
const OWN_NAMESPACE = new RegExp(`^${PREFIX}-(\\d+)-[0-9a-f]+-(br|h\\d+)$`);
/** The host side of every link, in its host's namespace. */
const LINK = "lan0";
/** The bridge every port is on, and the extra bridges a partition puts sides on. */
const BRIDGE = "lan";
const SIDE_BRIDGE = (side: number) => `side${side}`;
const MAX_HOSTS = 250;

/** How loss (and delay) are put on a link: in the kernel (netem, or iptables' random drop), or not at all here. */
export type LinkShaping = "netem" | "iptables" | "none";

/** Loss and delay on one host's link, each way. Loss is a fraction 0..1; delay (netem only) in ms. */
export interface LinkConditions {
  /** Of what the host sends. */
  readonly egressLoss?: number;
  /** Of what the host receives. */
  readonly ingressLoss?: number;
  /** Added to what the host sends (netem only). */
  readonly delayMs?: number;
}

export interface Host {
  readonly index: number;
  readonly namespace: string;
  /** Its address on the LAN. */
  readonly address: string;
  /** Its IPv6 address on the LAN (fd77::<index + 1>), on a LAN made with `ipv6`. */
  readonly address6: string | undefined;
  /** The command prefix that runs a program in this host: `[...within, program, ...args]`. */
  readonly within: readonly [string, ...string[]];
}

/** The iptables chains that drop a share of what a host sends and receives. */
const EGRESS_LOSS = "lan-egress-loss";
const INGRESS_LOSS = "lan-ingress-loss";

/** Runs `ip` (or `tc`, `iptables`) with `args`, feeding `input` to its stdin; rejects with its stderr. */
function run(command: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { encoding: "utf8", timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(" ")} failed: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

const ip = (args: readonly string[]) => run("ip", args);
/** Many `ip` commands in one process, one a line, in `namespace` (the root one when undefined). */
const ipBatch = (lines: readonly string[], namespace?: string) =>
  run("ip", [...(namespace === undefined ? [] : ["-n", namespace]), "-batch", "-"], `${lines.join("\n")}\n`);

const commandExists = (command: string) =>
  new Promise<boolean>((resolve) => {
    const child = spawn(command, ["-V"], { stdio: "ignore" });
    child.on("error", () => resolve(false));
    child.on("close", () => resolve(true));
  });

let support: Promise<string | undefined> | undefined;

/**
 * Why hosts cannot be made here (not Linux, not root, no `ip`, namespaces refused), or undefined when
 * they can. Found once per process, by making and deleting a namespace.
 */
export function hostNetworkUnsupported(): Promise<string | undefined> {
  support ??= (async () => {
    if (process.platform !== "linux") return `network namespaces need Linux (this is ${process.platform})`;
    if (process.getuid?.() !== 0) return "network namespaces need root (run the tests as root)";
    if (!(await commandExists("ip"))) return "network namespaces need iproute2's `ip` on PATH";
    const probe = `${PREFIX}-${process.pid}-${randomBytes(3).toString("hex")}-br`;
    try {
      await ip(["netns", "add", probe]);
      await ip(["-n", probe, "link", "add", BRIDGE, "type", "bridge"]);
    } catch (error) {
      return `network namespaces cannot be made here: ${(error as Error).message}`;
    } finally {
      await ip(["netns", "del", probe]).catch(() => undefined);
    }
    return undefined;
  })();
  return support;
}

/** The `ip -force -batch` input that deletes `namespaces` (and with them their links and bridges). */
const deletion = (namespaces: readonly string[]) => `${namespaces.map((name) => `netns del ${name}`).join("\n")}\n`;

/** The namespaces of this harness whose creating process is gone (a run killed before it cleaned up). */
async function removeStaleNamespaces(): Promise<void> {
  const listed = await ip(["netns", "list"]);
  const stale = listed
    .split("\n")
    .map((line) => line.split(" ")[0]!)
    .filter((name) => {
      const match = OWN_NAMESPACE.exec(name);
      return match !== null && !processExists(Number(match[1]));
    });
  if (stale.length > 0) await run("ip", ["-force", "-batch", "-"], deletion(stale));
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Puts netem with `loss` and `delayMs` on `device` of `namespace`, or takes it off when both are 0. */
async function netem(namespace: string, device: string, loss: number, delayMs: number): Promise<void> {
  const tc = (...args: string[]) => run("ip", ["netns", "exec", namespace, "tc", "qdisc", ...args]);
  if (loss > 0 || delayMs > 0) {
    await tc("replace", "dev", device, "root", "netem", "loss", `${(loss * 100).toFixed(4)}%`, ...(delayMs > 0 ? ["delay", `${delayMs}ms`] : []));
    return;
  }
  // Nothing to take off is not an error.
  await tc("del", "dev", device, "root").catch(() => undefined);
}

/** Packets netem dropped on `device` of `namespace` (0 without netem there). */
async function netemDrops(namespace: string, device: string): Promise<number> {
  const qdiscs = JSON.parse(await run("ip", ["netns", "exec", namespace, "tc", "-s", "-j", "qdisc", "show", "dev", device])) as Array<{ kind: string; drops?: number }>;
  return qdiscs.filter((q) => q.kind === "netem").reduce((sum, q) => sum + (q.drops ?? 0), 0);
}

/** Which way of shaping links this kernel and these tools allow, found by trying it in `probe`'s namespace. */
async function probeShaping(probe: Host): Promise<LinkShaping> {
  try {
    await run("ip", ["netns", "exec", probe.namespace, "tc", "qdisc", "add", "dev", LINK, "root", "netem", "loss", "0%"]);
    await run("ip", ["netns", "exec", probe.namespace, "tc", "qdisc", "del", "dev", LINK, "root"]);
    return "netem";
  } catch {
    // No netem in this kernel (or no tc): try iptables' statistic match.
  }
  try {
    await run("ip", ["netns", "exec", probe.namespace, "iptables", "-w", "-N", "ab-probe"]);
    await run("ip", ["netns", "exec", probe.namespace, "iptables", "-w", "-A", "ab-probe", "-m", "statistic", "--mode", "random", "--probability", "0", "-j", "DROP"]);
    await run("ip", ["netns", "exec", probe.namespace, "iptables", "-w", "-F", "ab-probe"]);
    await run("ip", ["netns", "exec", probe.namespace, "iptables", "-w", "-X", "ab-probe"]);
    return "iptables";
  } catch {
    return "none";
  }
}

export interface HostNetworkOptions {
  /** How many hosts, 1 to 250. */
  readonly hosts: number;
  /** Every link's MTU in bytes. Default 1500 (an Ethernet LAN: large datagrams travel as IP fragments). */
  readonly mtu?: number;
  /** IPv6 too: an address fd77::<index + 1>/64 on every link, and a route for IPv6 multicast over it. Default false. */
  readonly ipv6?: boolean;
}

/** A LAN of hosts in network namespaces; `await using` destroys it. */
export class HostNetwork {
  readonly hosts: readonly Host[];
  readonly #bridgeNamespace: string;
  readonly #namespaces: readonly string[];
  readonly #exitHook = () => this.#destroyNow();
  #shaping: LinkShaping = "none";
  /** Hosts whose loss chains exist (iptables shaping). */
  readonly #lossChains = new Set<Host>();
  /** Side bridges made so far (partitions reuse them). */
  #sides = 0;
  #destroyed = false;

  private constructor(run: string, hosts: readonly Host[]) {
    this.hosts = hosts;
    this.#bridgeNamespace = `${run}-br`;
    this.#namespaces = [this.#bridgeNamespace, ...hosts.map((h) => h.namespace)];
    process.on("exit", this.#exitHook);
  }

  /** Makes the LAN (root and iproute2 required: check {@link hostNetworkUnsupported} first). */
  static async create(options: HostNetworkOptions): Promise<HostNetwork> {
    const { hosts: count, mtu = 1500, ipv6 = false } = options;
    if (!Number.isInteger(count) || count < 1 || count > MAX_HOSTS) throw new RangeError(`hosts: expected an integer from 1 to ${MAX_HOSTS}, got ${count}`);
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65_535) throw new RangeError(`mtu: expected an integer from 576 to 65535, got ${mtu}`);
    await removeStaleNamespaces();
    const runName = `${PREFIX}-${process.pid}-${randomBytes(3).toString("hex")}`;
    const bridge = `${runName}-br`;
    const hosts: Host[] = Array.from({ length: count }, (_, index) => {
      const namespace = `${runName}-h${index}`;
      return { index, namespace, address: `10.77.0.${index + 1}`, address6: ipv6 ? `fd77::${index + 1}` : undefined, within: ["ip", "netns", "exec", namespace] };
    });
    const network = new HostNetwork(runName, hosts);
    try {
      await ipBatch([`netns add ${bridge}`, ...hosts.map((h) => `netns add ${h.namespace}`)]);
      // IGMP snooping off: the bridge floods multicast to every port, as a switch without snooping. With
      // snooping, a port that went down loses its groups until the host answers the next query (minutes).
      await ipBatch([
        `link add ${BRIDGE} type bridge mcast_snooping 0`,
        // Each veth pair is made straight into its two namespaces: no name is ever taken in the root one.
        ...hosts.map((h) => `link add p${h.index} mtu ${mtu} type veth peer name ${LINK} mtu ${mtu} netns ${h.namespace}`),
        ...hosts.map((h) => `link set p${h.index} master ${BRIDGE} up`),
        `link set ${BRIDGE} up`,
      ], bridge);
      await Promise.all(
        hosts.map((h) =>
          ipBatch([
            "link set lo up",
            // No IPv6 link-local address: the link carries the members' traffic only.
            `link set ${LINK} addrgenmode none`,
            `addr add ${h.address}/24 dev ${LINK}`,
            // No duplicate address detection: the address is usable at once, and only this run hands them out.
            ...(ipv6 ? [`addr add ${h.address6}/64 dev ${LINK} nodad`] : []),
            `link set ${LINK} up`,
            `route add 224.0.0.0/4 dev ${LINK}`,
            ...(ipv6 ? [`route replace multicast ff00::/8 dev ${LINK} table local`] : []),
          ], h.namespace),
        ),
      );
      network.#shaping = await probeShaping(hosts[0]!);
      return network;
    } catch (error) {
      await network.destroy();
      throw error;
    }
  }

  /** How link conditions are set here; with "none", members take loss in-process (`withLoss`). */
  get shaping(): LinkShaping {
    return this.#shaping;
  }

  /** The port of `host` on the bridges. */
  #port(host: Host): string {
    return `p${host.index}`;
  }

  /**
   * Cuts `host`'s link at the bridge, as a pulled cable: the host keeps its address and routes and its
   * sends vanish (no error), and nothing reaches it.
   */
  async cut(host: Host): Promise<void> {
    await ip(["-n", this.#bridgeNamespace, "link", "set", this.#port(host), "down"]);
  }

  /** Reconnects a link {@link cut} before. */
  async heal(host: Host): Promise<void> {
    await ip(["-n", this.#bridgeNamespace, "link", "set", this.#port(host), "up"]);
  }

  /**
   * Splits the LAN: the hosts of each side hear each other only (a host in no side keeps the main
   * bridge, with the hosts of no side). {@link join} undoes it.
   */
  async partition(sides: ReadonlyArray<readonly Host[]>): Promise<void> {
    const lines: string[] = [];
    for (; this.#sides < sides.length; this.#sides++) lines.push(`link add ${SIDE_BRIDGE(this.#sides)} type bridge mcast_snooping 0`, `link set ${SIDE_BRIDGE(this.#sides)} up`);
    sides.forEach((side, i) => side.forEach((host) => lines.push(`link set ${this.#port(host)} master ${SIDE_BRIDGE(i)}`)));
    await ipBatch(lines, this.#bridgeNamespace);
  }

  /** Puts every host back on one LAN. */
  async join(): Promise<void> {
    await ipBatch(this.hosts.map((h) => `link set ${this.#port(h)} master ${BRIDGE}`), this.#bridgeNamespace);
  }

  /**
   * Sets `host`'s link conditions (replacing earlier ones; `{}` clears them), in the kernel. With netem,
   * loss drops IP packets (one fragment loses its whole datagram); with iptables, whole UDP datagrams.
   * Delay needs netem. With shaping "none" this throws: start members with in-process loss instead.
   */
  async shape(host: Host, conditions: LinkConditions): Promise<void> {
    const { egressLoss = 0, ingressLoss = 0, delayMs = 0 } = conditions;
    for (const [field, loss] of [["egressLoss", egressLoss], ["ingressLoss", ingressLoss]] as const) {
      if (!(loss >= 0 && loss <= 1)) throw new RangeError(`${field}: expected a fraction from 0 to 1, got ${loss}`);
    }
    if (!(delayMs >= 0)) throw new RangeError(`delayMs: expected a duration of 0 ms or more, got ${delayMs}`);
    switch (this.#shaping) {
      case "none":
        throw new Error("link conditions cannot be set here (no netem, no iptables): use in-process loss (withLoss)");
      case "netem":
        // Egress at the host's end of its link, ingress at the bridge's end.
        await netem(host.namespace, LINK, egressLoss, delayMs);
        await netem(this.#bridgeNamespace, this.#port(host), ingressLoss, 0);
        return;
      case "iptables": {
        if (delayMs > 0) throw new Error("delayMs needs netem, which this kernel lacks");
        const iptables = (...args: string[]) => run("ip", ["netns", "exec", host.namespace, "iptables", "-w", ...args]);
        // Chains of their own, so that other rules in the host's firewall stay as they are.
        if (!this.#lossChains.has(host)) {
          await iptables("-N", EGRESS_LOSS);
          await iptables("-N", INGRESS_LOSS);
          await iptables("-A", "OUTPUT", "-o", LINK, "-j", EGRESS_LOSS);
          await iptables("-A", "INPUT", "-i", LINK, "-j", INGRESS_LOSS);
          this.#lossChains.add(host);
        }
        for (const [chain, loss] of [[EGRESS_LOSS, egressLoss], [INGRESS_LOSS, ingressLoss]] as const) {
          await iptables("-F", chain);
          // UDP only: the members' datagrams (an IGMP report lost would only blur the counts).
          if (loss > 0) await iptables("-A", chain, "-p", "udp", "-m", "statistic", "--mode", "random", "--probability", loss.toFixed(6), "-j", "DROP");
        }
      }
    }
  }

  /**
   * What `host`'s link conditions dropped since they were last set: packets (netem) or datagrams
   * (iptables) it sent, and that were on their way to it.
   */
  async dropped(host: Host): Promise<{ egress: number; ingress: number }> {
    switch (this.#shaping) {
      case "none":
        return { egress: 0, ingress: 0 };
      case "netem":
        return { egress: await netemDrops(host.namespace, LINK), ingress: await netemDrops(this.#bridgeNamespace, this.#port(host)) };
      case "iptables": {
        if (!this.#lossChains.has(host)) return { egress: 0, ingress: 0 };
        // `-L -v -x -n`: two lines of heading, then one line a rule, its packet count first.
        const count = async (chain: string) =>
          (await run("ip", ["netns", "exec", host.namespace, "iptables", "-w", "-L", chain, "-v", "-x", "-n"]))
            .split("\n")
            .slice(2)
            .reduce((sum, line) => sum + (Number(line.trim().split(/\s+/)[0]) || 0), 0);
        return { egress: await count(EGRESS_LOSS), ingress: await count(INGRESS_LOSS) };
      }
    }
  }

  /**
   * The kernel's datagram counters in `host` since it was made: UDP datagrams delivered to its sockets,
   * those dropped for want of room in a socket's receive buffer, and IP reassemblies that failed.
   */
  async datagramCounters(host: Host): Promise<{ received: number; receiveBufferErrors: number; reassemblyFailures: number }> {
    const snmp = (await run("ip", ["netns", "exec", host.namespace, "cat", "/proc/net/snmp"])).split("\n");
    // Each protocol has two lines, "Udp: <names>" then "Udp: <values>".
    const counters = (protocol: string) => {
      const [names, values] = snmp.filter((line) => line.startsWith(`${protocol}:`)).map((line) => line.split(/\s+/).slice(1));
      return (name: string) => Number(values![names!.indexOf(name)]);
    };
    const [udp, ip] = [counters("Udp"), counters("Ip")];
    return { received: udp("InDatagrams"), receiveBufferErrors: udp("RcvbufErrors"), reassemblyFailures: ip("ReasmFails") };
  }

  /** Packets that crossed `host`'s link so far, as the bridge counts them: sent by the host, and delivered to it. */
  async traffic(host: Host): Promise<{ sent: number; received: number }> {
    const [link] = JSON.parse(await ip(["-n", this.#bridgeNamespace, "-s", "-j", "link", "show", this.#port(host)])) as Array<{
      stats64: { rx: { packets: number }; tx: { packets: number } };
    }>;
    return { sent: link!.stats64.rx.packets, received: link!.stats64.tx.packets };
  }

  /** The network's namespaces that exist now (all of them until destroyed, none after). */
  async namespaces(): Promise<string[]> {
    const listed = (await ip(["netns", "list"])).split("\n").map((line) => line.split(" ")[0]!);
    return this.#namespaces.filter((name) => listed.includes(name));
  }

  /** Deletes every namespace, and with them every link and bridge, of the network. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    process.off("exit", this.#exitHook);
    await run("ip", ["-force", "-batch", "-"], deletion(this.#namespaces));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }

  // The process is ending without destroy(): only synchronous work runs now.
  #destroyNow(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      execFileSync("ip", ["-force", "-batch", "-"], { input: deletion(this.#namespaces), stdio: ["pipe", "ignore", "ignore"] });
    } catch {
      // What is left is removed as stale by the next run.
    }
  }
}
