// The lab's private bridge. Guests attach through nspawn's veth pairs; there is
// no forwarding and no NAT, so nothing leaves 198.18.0.0/24.
import { existsSync } from "node:fs";
import { run } from "./exec.js";
import { BRIDGE, BRIDGE_ADDRESS, PREFIX_LENGTH } from "./topology.js";

export function bridgeExists(): boolean {
  return existsSync(`/sys/class/net/${BRIDGE}`);
}

export async function bridgeUp(): Promise<void> {
  if (!bridgeExists()) await run("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  await run("ip", ["address", "replace", `${BRIDGE_ADDRESS}/${PREFIX_LENGTH}`, "dev", BRIDGE]);
  await run("ip", ["link", "set", BRIDGE, "up"]);
}

export async function bridgeDown(): Promise<void> {
  if (bridgeExists()) await run("ip", ["link", "delete", BRIDGE]);
}
