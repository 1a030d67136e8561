/**
 * Accounts and authentication, from LDAP (ldapts) in production; directory/
 * owns this file. Services receive a Directory and never talk LDAP themselves.
 */

export interface Account {
  /** Login name and mailbox owner (LDAP `uid`). */
  uid: string;
  dn: string;
  /** Primary address (LDAP `mail`). */
  mail: string;
  /** Every address that delivers here: mail + mailLocalAddress, lower-cased. */
  addresses: string[];
  /** LDAP `mailRoutingAddress`: when set, mail is forwarded there instead of stored. */
  routingAddress?: string;
  /** LDAP `mailHost`: which store (shard) holds the mailbox. */
  mailHost?: string;
  /** Quota in bytes from the directory; absent → store default. */
  quotaBytes?: number;
  displayName?: string;
}

/** Every configured directory server failed or timed out: callers answer 4xx, never "unknown user". */
export class DirectoryUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DirectoryUnavailableError";
  }
}

export interface Directory {
  /** By `mail` or `mailLocalAddress` (case-insensitive). null = no such address. */
  findByAddress(address: string): Promise<Account | null>;
  /** By `uid`, or by address when the login contains "@". */
  findByLogin(login: string): Promise<Account | null>;
  /** Binds as the user's DN. null = wrong login or password. Never cached. */
  authenticate(login: string, password: string): Promise<Account | null>;
  close(): Promise<void>;
}
