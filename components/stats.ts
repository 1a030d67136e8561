/**
 * `StatsDatabase`: the PostgreSQL role and database of the statistics service
 * on a `test` host whose database is local. Created when missing; the role's
 * password is set from the secret, which travels on stdin (SQL), never in the
 * command line.
 */
import type { remote } from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { type Connection, hostCommand, script, sha256 } from "./remote.js";

export interface StatsDatabaseArgs {
  connection: Connection;
  name: string;
  user: string;
  port: number;
  password: pulumi.Input<string>;
  dependsOn: pulumi.Input<pulumi.Resource>[];
}

/** Starts the local cluster (creating it if the package left none) and runs the SQL on stdin. */
export function statsDatabaseScript(port: number): string {
  return script(
    // The SQL arrives on stdin for psql alone: keep it on fd 3, give the rest /dev/null.
    "exec 3<&0 </dev/null",
    "ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)",
    '[ -n "$ver" ] || { echo "mailinfra: PostgreSQL is not installed" >&2; exit 1; }',
    `pg_lsclusters -h | grep -q . || pg_createcluster -p ${port} "$ver" main >/dev/null`,
    "systemctl enable -q postgresql",
    "cluster=$(pg_lsclusters -h | head -n 1 | awk '{print $1\"/\"$2}')",
    'v=$(echo "$cluster" | cut -d/ -f1); c=$(echo "$cluster" | cut -d/ -f2)',
    'pg_ctlcluster "$v" "$c" status >/dev/null 2>&1 || pg_ctlcluster "$v" "$c" start',
    `for i in $(seq 1 50); do pg_isready -q -p ${port} && break; sleep 0.2; done`,
    `pg_isready -q -p ${port} || { echo "mailinfra: PostgreSQL does not answer on port ${port}" >&2; exit 1; }`,
    `runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p ${port} -d postgres <&3`,
    'echo "statistics database ready"',
  );
}

/** The SQL (holds the password: stdin only). */
export function statsDatabaseSql(name: string, user: string, password: string): string {
  const lit = (s: string) => `'${s.replaceAll("'", "''")}'`;
  return [
    `SELECT 'CREATE ROLE "${user}" LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${lit(user)})\\gexec`,
    `ALTER ROLE "${user}" WITH LOGIN PASSWORD ${lit(password)};`,
    `SELECT 'CREATE DATABASE "${name}" OWNER "${user}"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = ${lit(name)})\\gexec`,
    "",
  ].join("\n");
}

/** postgres:// URL for the runtime (written to a 0600 file). */
export function statsDatabaseUrl(
  host: string,
  port: number,
  name: string,
  user: string,
  password: string,
): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(name)}`;
}

export class StatsDatabase extends pulumi.ComponentResource {
  readonly step: remote.Command;
  constructor(name: string, args: StatsDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mailinfra:stats:StatsDatabase", name, {}, opts);
    const create = statsDatabaseScript(args.port);
    const sql = pulumi.output(args.password).apply((pw) => statsDatabaseSql(args.name, args.user, pw));
    this.step = hostCommand(
      `${name}-create`,
      {
        connection: args.connection,
        create,
        stdin: pulumi.secret(sql),
        // The statistics are kept: dropping them is ops' decision, not a stack removal's.
        triggers: [sha256(create), sql.apply((s) => sha256(s))],
      },
      { parent: this, dependsOn: args.dependsOn },
    );
    this.registerOutputs({});
  }
}
