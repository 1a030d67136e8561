/** directory/: accounts and authentication. Services get a Directory from createDirectory. */
import type { LdapConfig } from "../config/schema.js";
import { LdapDirectory, type LdapDirectoryOptions } from "./ldap.js";
import type { Directory } from "./types.js";

export { escapeFilterValue } from "./filter.js";
export { LdapDirectory, type LdapDirectoryOptions } from "./ldap.js";
export { type Account, type Directory, DirectoryUnavailableError } from "./types.js";

/** The Directory for runtime.yaml's `ldap` section. Reads the bind password file now: a missing file fails at start. */
export function createDirectory(config: LdapConfig, options: LdapDirectoryOptions = {}): Directory {
  return new LdapDirectory(config, options);
}
