/** Pure renderers for the files the deployer installs; each is snapshot-tested. */
export {
  type DnsHost,
  type DnsZoneParams,
  renderDnsZone,
} from "./dns.js";
export {
  type AuthkeysMethod,
  type AuthkeysParams,
  type AutoFailback,
  type HaCfParams,
  type HaresourcesParams,
  HEARTBEAT_SERVICES,
  type HeartbeatBaud,
  type HeartbeatSerial,
  type HeartbeatService,
  type HeartbeatUcast,
  type ResourceScriptParams,
  renderAuthkeys,
  renderHaCf,
  renderHaresources,
  renderResourceScript,
} from "./heartbeat.js";
export {
  type BaseLdifParams,
  DEBIAN_SLAPD,
  derivedSalt,
  LDAPI_ROOT_DN,
  type LdapServiceAccount,
  renderBaseLdif,
  renderSlapdConf,
  renderSlapdDefaults,
  type SlapdDefaultsParams,
  type SlapdParams,
  type SlapdProviderParams,
  type SlapdReplicaParams,
  type SlapdTls,
  serviceDn,
  sshaHash,
  userDn,
} from "./ldap.js";
export { type RuntimeYamlParams, renderRuntimeYaml } from "./runtime.js";
export {
  RUNTIME_SERVICES,
  type RuntimeService,
  renderSystemdUnit,
  type SystemdUnitParams,
  type UnitType,
  unitName,
} from "./systemd.js";
export { RenderError } from "./template.js";
