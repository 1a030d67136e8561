/** Params and helpers shared by the LDAP tests (fake credentials only). */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type BaseLdifParams,
  type SlapdProviderParams,
  type SlapdReplicaParams,
  serviceDn,
  sshaHash,
} from "../../components/render/index.js";
import { FAKE, SUFFIX, tempDir } from "./fixtures.js";

export const MAILINFRA_SCHEMA = new URL("../../templates/ldap/mailinfra.schema", import.meta.url).pathname;
const SALT = Buffer.from("fakesalt");

export const provider: SlapdProviderParams = {
  role: "provider",
  suffix: SUFFIX,
  rootDn: `cn=admin,${SUFFIX}`,
  rootPasswordHash: sshaHash(FAKE.rootPassword, SALT),
  serviceDns: [serviceDn(SUFFIX, "mx"), serviceDn(SUFFIX, "store")],
  replicationDn: serviceDn(SUFFIX, "replicator"),
};

export const replica: SlapdReplicaParams = {
  role: "replica",
  suffix: SUFFIX,
  rootDn: `cn=admin,${SUFFIX}`,
  serviceDns: provider.serviceDns,
  replicationDn: provider.replicationDn,
  rid: 2,
  providerUri: "ldap://ldap1.example.org/",
  replicationPassword: FAKE.replicationPassword,
};

export const baseLdif: BaseLdifParams = {
  suffix: SUFFIX,
  organization: "Example Business School",
  services: [
    { name: "mx", password: FAKE.servicePassword },
    { name: "store", password: `${FAKE.servicePassword}-store` },
  ],
  replication: { name: "replicator", password: FAKE.replicationPassword },
  saltSeed: "fake-seed",
};

/** slaptest -u (dry run: checks the config, opens no database) with the schema beside it. */
export function slaptest(conf: string): { status: number | null; output: string } {
  const dir = tempDir("slaptest");
  copyFileSync(MAILINFRA_SCHEMA, join(dir, "mailinfra.schema"));
  const file = join(dir, "slapd.conf");
  // slaptest checks that the mdb directory exists (the component creates it on the host).
  mkdirSync(join(dir, "db"));
  const local = conf
    .replaceAll("/etc/ldap/schema/mailinfra.schema", join(dir, "mailinfra.schema"))
    .replace(/^directory \/var\/lib\/ldap\/mailinfra$/m, `directory ${join(dir, "db")}`);
  writeFileSync(file, local, { mode: 0o600 });
  const r = spawnSync("slaptest", ["-u", "-f", file], { encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}
