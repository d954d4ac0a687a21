/** Collects what handlers saw, keyed, and lets a test wait for it. */
export class Log<T extends { key: string }> {
  private readonly items = new Map<string, T[]>();
  private readonly waiters = new Map<string, Array<{ count: number; resolve: (v: T[]) => void }>>();

  push(item: T): void {
    const list = this.items.get(item.key) ?? [];
    list.push(item);
    this.items.set(item.key, list);
    for (const w of this.waiters.get(item.key) ?? []) if (list.length >= w.count) w.resolve(list);
  }

  wait(key: string, count = 1, ms = 15000): Promise<T[]> {
    const list = this.items.get(key) ?? [];
    if (list.length >= count) return Promise.resolve(list);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${count} record(s) of ${key}`)), ms);
      const entry = {
        count,
        resolve: (v: T[]) => {
          clearTimeout(timer);
          resolve(v);
        },
      };
      this.waiters.set(key, [...(this.waiters.get(key) ?? []), entry]);
    });
  }
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
