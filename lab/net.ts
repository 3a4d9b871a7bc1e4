// The lab's private segment: a bridge inside a network namespace and taps for the VMs.
// Documentation addresses only, no route out of the namespace, nothing NATed.
import { existsSync } from "node:fs";
import { run, runIn } from "./run";
import {
  BRIDGE,
  NETNS,
  NS_IP4,
  NS_IP6,
  PREFIX4,
  PREFIX6,
  SERVICES_IP4,
  SERVICES_IP6,
} from "./settings";

export function netnsExists(): boolean {
  return existsSync(`/run/netns/${NETNS}`);
}

export function tapName(host: string): string {
  return `mslab-${host}`.slice(0, 15);
}

export function createNetwork(hosts: string[]): void {
  run("ip", ["netns", "add", NETNS]);
  const ns = (...args: string[]) => runIn(NETNS, "ip", args);
  ns("link", "set", "lo", "up");
  ns("link", "add", BRIDGE, "type", "bridge");
  ns("link", "set", BRIDGE, "up");
  for (const a of [SERVICES_IP4, NS_IP4]) ns("addr", "add", `${a}/${PREFIX4}`, "dev", BRIDGE);
  for (const a of [SERVICES_IP6, NS_IP6])
    ns("-6", "addr", "add", `${a}/${PREFIX6}`, "dev", BRIDGE, "nodad");

  for (const h of hosts) addTap(h);
}

/** A tap on the lab's bridge for one more VM (the benchmark's floor VMs). */
export function addTap(host: string): void {
  const ns = (...args: string[]) => runIn(NETNS, "ip", args, { stdio: "pipe" });
  try {
    ns("link", "show", "dev", tapName(host));
    return;
  } catch {
    // not there yet
  }
  ns("tuntap", "add", "dev", tapName(host), "mode", "tap");
  ns("link", "set", tapName(host), "master", BRIDGE, "up");
}

/** Removes the namespace with everything in it; safe when it is already gone. */
export function removeNetwork(): void {
  if (netnsExists()) run("ip", ["netns", "del", NETNS]);
}
