/**
 * sequence-set (RFC 3501 §9; RFC 5182 "$" is not offered): "1:4,7,9:*".
 * "*" is the largest number in use; ranges may be given high:low.
 */

export type SeqRange = [number, number]; // inclusive, 0 stands for "*"

export class SequenceError extends Error {}

const MAX_SEQ = 0xffffffff;

export function parseSequenceSet(text: string): SeqRange[] {
  if (!/^[0-9*:,]+$/.test(text)) throw new SequenceError("invalid sequence set");
  const ranges: SeqRange[] = [];
  for (const item of text.split(",")) {
    const m = /^(\d+|\*)(?::(\d+|\*))?$/.exec(item);
    if (!m) throw new SequenceError("invalid sequence set");
    const a = m[1] === "*" ? 0 : Number(m[1]);
    const b = m[2] === undefined ? a : m[2] === "*" ? 0 : Number(m[2]);
    if (
      (m[1] !== "*" && (a < 1 || a > MAX_SEQ)) ||
      (m[2] !== undefined && m[2] !== "*" && (b < 1 || b > MAX_SEQ))
    )
      throw new SequenceError("sequence number out of range");
    ranges.push([a, b]);
  }
  return ranges;
}

export function isSequenceSet(text: string): boolean {
  try {
    parseSequenceSet(text);
    return true;
  } catch {
    return false;
  }
}

/** Does `n` fall into the set, with "*" meaning `max`? */
export function inSequenceSet(ranges: readonly SeqRange[], n: number, max: number): boolean {
  for (const [a0, b0] of ranges) {
    const a = a0 === 0 ? max : a0;
    const b = b0 === 0 ? max : b0;
    if (n >= Math.min(a, b) && n <= Math.max(a, b)) return true;
  }
  return false;
}

/** Compact form for responses: [1,2,3,5] → "1:3,5". */
export function formatSequenceSet(nums: readonly number[]): string {
  if (nums.length === 0) return "";
  const sorted = [...nums].sort((x, y) => x - y);
  const parts: string[] = [];
  let start = sorted[0]!;
  let prev = start;
  for (let i = 1; i <= sorted.length; i++) {
    const n = sorted[i];
    if (n === prev + 1) {
      prev = n;
      continue;
    }
    if (n === prev) continue;
    parts.push(start === prev ? String(start) : `${start}:${prev}`);
    if (n !== undefined) start = prev = n;
  }
  return parts.join(",");
}
