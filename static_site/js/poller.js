// A poller that stops while the page is hidden (Page Visibility API) and polls again at once
// when the page becomes visible. No DOM beyond `doc.hidden` and the `visibilitychange` event, so
// it runs under node:test with a stand-in document and mocked timers.

export class VisibilityPoller {
  /**
   * @param {object} o
   * @param {() => Promise<{done?: boolean, nextMs?: number}|void>} o.tick  one poll; `done` stops
   * @param {number} o.intervalMs  delay between polls (a tick may change it with nextMs)
   * @param {Document|EventTarget} [o.doc]  anything with `hidden` and visibilitychange events
   * @param {(state: string) => void} [o.onState]  "running" | "paused" | "stopped"
   * @param {(error: unknown) => void} [o.onError]  a tick that throws stops the poller
   */
  constructor({ tick, intervalMs, doc = globalThis.document, onState = () => {}, onError = () => {} }) {
    this.tick = tick;
    this.intervalMs = intervalMs;
    this.doc = doc;
    this.onState = onState;
    this.onError = onError;
    this.timer = null;
    this.inFlight = false;
    this.state = "stopped";
    this.ticks = 0;
    this.onVisibility = () => this.visibilityChanged();
  }

  start({ immediate = false } = {}) {
    if (this.state !== "stopped") return;
    this.doc?.addEventListener?.("visibilitychange", this.onVisibility);
    if (this.doc?.hidden) {
      this.setState("paused");
      return;
    }
    this.setState("running");
    if (immediate) this.run();
    else this.schedule();
  }

  stop() {
    this.clear();
    this.doc?.removeEventListener?.("visibilitychange", this.onVisibility);
    this.setState("stopped");
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  clear() {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  schedule() {
    this.clear();
    if (this.state !== "running") return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run();
    }, Math.max(0, this.intervalMs));
  }

  visibilityChanged() {
    if (this.state === "stopped") return;
    if (this.doc.hidden) {
      this.clear();
      this.setState("paused");
    } else if (this.state === "paused") {
      this.setState("running");
      this.run();
    }
  }

  async run() {
    if (this.state !== "running" || this.inFlight) return;
    if (this.doc?.hidden) {
      this.setState("paused");
      return;
    }
    this.inFlight = true;
    let result;
    try {
      this.ticks += 1;
      result = await this.tick();
    } catch (error) {
      this.inFlight = false;
      this.stop();
      this.onError(error);
      return;
    }
    this.inFlight = false;
    if (result && result.done) {
      this.stop();
      return;
    }
    if (result && Number.isFinite(result.nextMs)) this.intervalMs = result.nextMs;
    if (this.state === "running") this.schedule();
  }
}
