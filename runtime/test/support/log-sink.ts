import { Writable } from "node:stream";

/** A pino destination that keeps each log line (as written) in `lines`. */
export function lineSink(lines: string[]): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
}

/** A pino destination that keeps each log line, parsed, in `records`. */
export function jsonSink(records: Array<Record<string, unknown>>): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n"))
        if (line) records.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
}
