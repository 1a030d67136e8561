/**
 * A pipeline that accepts everything, for the SMTP tests that are not about
 * filtering and for hosts configured without checks. filter/ supplies the
 * real one (createFilterPipeline).
 */
import type { FilterPipeline, FilterTransaction, Verdict } from "../filter/types.js";

const accept = (): Verdict => ({
  action: "accept",
  addHeaders: [],
  score: 0,
  decidedBy: "none",
  results: [],
});

export function acceptAllPipeline(): FilterPipeline {
  return {
    transaction(): FilterTransaction {
      return {
        onConnect: async () => accept(),
        onHelo: async () => accept(),
        onMailFrom: async () => accept(),
        onRcptTo: async () => accept(),
        onData: async () => accept(),
        record: () => ({ pipeline: "accept-all" }),
      };
    },
    close: async () => undefined,
  };
}
