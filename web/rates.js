// Message rates from the totals the API returns: the server keeps counts (replicated, so any node gives the
// same ones); the page keeps the readings it polled and derives per-second rates and their recent history.

const HISTORY_MS = 10 * 60 * 1000;
const RATE_WINDOW_MS = 5000;

export const SERIES = ["published", "delivered", "acked", "nacked", "dead_lettered"];

export class Rates {
  constructor() {
    this.readings = new Map(); // key -> [{t, totals}]
  }

  record(key, totals, t = Date.now()) {
    if (!totals) return;
    let list = this.readings.get(key);
    if (!list) this.readings.set(key, (list = []));
    const last = list[list.length - 1];
    if (last && last.t === t) return;
    list.push({ t, totals: { ...totals } });
    while (list.length > 2 && list[0].t < t - HISTORY_MS) list.shift();
  }

  forget(keys) {
    for (const key of [...this.readings.keys()]) if (!keys.has(key)) this.readings.delete(key);
  }

  // Per-second rate of `what` over about the last RATE_WINDOW_MS; null until two readings exist.
  rate(key, what) {
    const list = this.readings.get(key);
    if (!list || list.length < 2) return null;
    const last = list[list.length - 1];
    let first = list[list.length - 2];
    for (let i = list.length - 2; i >= 0; i -= 1) {
      first = list[i];
      if (last.t - list[i].t >= RATE_WINDOW_MS) break;
    }
    const seconds = (last.t - first.t) / 1000;
    if (seconds <= 0) return null;
    return Math.max(0, (last.totals[what] - first.totals[what]) / seconds);
  }

  // [[t, rate], ...] between consecutive readings: what the charts draw.
  history(key, what) {
    const list = this.readings.get(key) || [];
    const points = [];
    for (let i = 1; i < list.length; i += 1) {
      const seconds = (list[i].t - list[i - 1].t) / 1000;
      if (seconds > 0) points.push([list[i].t, Math.max(0, (list[i].totals[what] - list[i - 1].totals[what]) / seconds)]);
    }
    return points;
  }

  sum(keys, what) {
    let total = null;
    for (const key of keys) {
      const value = this.rate(key, what);
      if (value !== null) total = (total || 0) + value;
    }
    return total;
  }
}
