/** Prometheus counters of the smtp service (on ctx.metrics, served by cli/ at /metrics). */
import { Counter, Gauge, type Registry } from "prom-client";

export interface SmtpMetrics {
  connection(listener: string): void;
  /** result: queued | rejected | discarded | held */
  message(listener: string, result: string): void;
  delivery(destination: "lmtp" | "smtp", status: string): void;
  /** smtp.quotaCheck at RCPT: full | full-cached | ok, or why it failed open (timeout, unreachable, …). */
  quotaCheck(result: string): void;
}

export function createSmtpMetrics(registry: Registry, queueSize: () => number): SmtpMetrics {
  const connections = new Counter({
    name: "mailinfra_smtp_connections_total",
    help: "SMTP connections accepted, by listener (mx, relay, submission)",
    labelNames: ["listener"],
    registers: [registry],
  });
  const messages = new Counter({
    name: "mailinfra_smtp_messages_total",
    help: "Messages at the end of DATA, by listener and result (queued, rejected, discarded, held)",
    labelNames: ["listener", "result"],
    registers: [registry],
  });
  const deliveries = new Counter({
    name: "mailinfra_queue_deliveries_total",
    help: "Recipient delivery attempts, by transport and outcome (delivered, pending, failed)",
    labelNames: ["transport", "status"],
    registers: [registry],
  });
  const quotaChecks = new Counter({
    name: "mailinfra_smtp_quota_checks_total",
    help: "Recipients' stores asked at RCPT (smtp.quotaCheck), by result: full, full-cached, ok, or why it failed open",
    labelNames: ["result"],
    registers: [registry],
  });
  new Gauge({
    name: "mailinfra_queue_messages",
    help: "Messages in the queue",
    registers: [registry],
    collect() {
      this.set(queueSize());
    },
  });
  return {
    connection: (listener) => connections.inc({ listener }),
    message: (listener, result) => messages.inc({ listener, result }),
    delivery: (transport, status) => deliveries.inc({ transport, status }),
    quotaCheck: (result) => quotaChecks.inc({ result }),
  };
}
