/**
 * Obviously fake values for the renderer tests. None is a real secret; tests
 * still check that clear-text passwords never reach files that should hold
 * only hashes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const FAKE = {
  heartbeatSecret: "FAKE-heartbeat-secret-for-tests",
  rootPassword: "FAKE-root-password",
  replicationPassword: "FAKE-replication-password",
  servicePassword: "FAKE-service-password",
  userPassword: "FAKE-user-password",
} as const;

export const SUFFIX = "dc=example,dc=org";

/** Snapshot path for a rendered file: test/render/__snapshots__/<name>. */
export function snapshotPath(name: string): string {
  return join(import.meta.dirname, "__snapshots__", name);
}

const created: string[] = [];

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mailinfra-render-${prefix}-`));
  created.push(dir);
  return dir;
}

/** Removes the temp dirs this test file made (call from afterAll, after stopping daemons). */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true });
}
