/** Trusted networks (relay role, port 25): CIDR lists matched against the socket's address only. */
import { BlockList, isIPv4, isIPv6 } from "node:net";

export class Networks {
  private readonly list = new BlockList();

  constructor(cidrs: string[]) {
    for (const cidr of cidrs) {
      const [address = "", prefixText] = cidr.split("/");
      const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
      if (!family) throw new Error(`trusted network ${JSON.stringify(cidr)}: not an IP address or CIDR`);
      const prefix = prefixText === undefined ? (family === "ipv4" ? 32 : 128) : Number(prefixText);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === "ipv4" ? 32 : 128)) {
        throw new Error(`trusted network ${JSON.stringify(cidr)}: bad prefix length`);
      }
      this.list.addSubnet(address, prefix, family);
    }
  }

  contains(remoteAddress: string): boolean {
    // IPv4 clients on a dual-stack socket appear as ::ffff:a.b.c.d.
    const v4 = remoteAddress.replace(/^::ffff:/i, "");
    if (isIPv4(v4)) return this.list.check(v4, "ipv4");
    if (isIPv6(remoteAddress)) return this.list.check(remoteAddress, "ipv6");
    return false;
  }
}
