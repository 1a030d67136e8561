/** Test certificates, made by openssl as on the hosts. */
import { spawn } from "node:child_process";
import { chmod } from "node:fs/promises";
import { join } from "node:path";

/**
 * A self-signed P-256 certificate for 127.0.0.1 and localhost, valid two days:
 * `dir`/cert.pem and `dir`/key.pem (mode 0600).
 */
export async function makeCertificate(
  dir: string,
  commonName = "localhost",
): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  await new Promise<void>((resolve, reject) => {
    const p = spawn(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
        ...[
          "-days",
          "2",
          "-subj",
          `/CN=${commonName}`,
          "-addext",
          "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        ...["-keyout", keyFile, "-out", certFile],
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let err = "";
    p.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
    });
    p.once("error", reject);
    p.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`openssl failed: ${err}`))));
  });
  await chmod(keyFile, 0o600);
  return { certFile, keyFile };
}
