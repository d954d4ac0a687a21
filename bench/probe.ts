// Per-process counters shared by every benchmark handler: requests served (the denominator of
// CPU time per request) and the memory at fixed request counts (the memory check). Every variant's
// handler calls hit() once, so its cost (an increment and a compare) is the same for all of them.

/** Request counts at which the memory is sampled from inside the server. */
export const RSS_MARKS = [20_000, 200_000] as const;

export const probe = {
  served: 0,
  /** RSS (bytes) after a full collection, at each mark. */
  rssAt: {} as Record<string, number>,
  /** V8 heap in use (bytes) after the same collection, at each mark. */
  heapAt: {} as Record<string, number>,
  /** Whatever the last handler produced beside its body (trace id, outbound request), for checks. */
  sink: undefined as unknown,
};

/**
 * `gc()` when the server runs with --expose-gc (bench/run.mjs starts it so), as V8's "last resort"
 * full collection where the engine supports it: like a collection under memory pressure, it also
 * hands pooled pages back, so RSS reflects what the process holds rather than what V8 keeps in
 * reserve after a burst of garbage (request scope produces a lot).
 */
const exposed = (globalThis as { gc?: (options?: object) => unknown }).gc;
const gc =
  exposed === undefined
    ? undefined
    : (): void => {
        try {
          exposed({ type: 'major', execution: 'sync', flavor: 'last-resort' });
        } catch {
          exposed();
        }
      };

/**
 * Samples the memory at a mark, right after the request that reached it: a full collection first
 * (when exposed), so that the figure is what the process holds, not garbage not collected yet.
 */
function sample(mark: number): void {
  gc?.();
  const memory = process.memoryUsage();
  probe.rssAt[mark] = memory.rss;
  probe.heapAt[mark] = memory.heapUsed;
}

/** Counts one served request and schedules a memory sample at the RSS_MARKS request counts. */
export function hit(): void {
  const n = ++probe.served;
  if (n === 20_000 || n === 200_000) setImmediate(sample, n);
}
