// Scoreboard live client: a dependency-free ES module for browsers.
//
//   import { ScoreboardClient } from "/static/scoreboard-client.js";
//   const client = new ScoreboardClient({ getToken: async () => myJwt });
//   client.addEventListener("leaderboard", (e) => render(e.detail.leaderboard));
//   client.addEventListener("state", (e) => show(e.detail.state));
//   client.start();
//
// It trades the token for a single-use ticket (POST /api/ws-ticket), connects to
// /ws/leaderboard?ticket=..., reconnects by itself with capped exponential backoff and full
// jitter, takes a fresh snapshot on every (re)connection, and drops any leaderboard whose
// version is older than the one it holds.
//
// Events (all CustomEvent, payload in `detail`):
//   state        {state: "connecting" | "connected" | "reconnecting" | "stopped", attempt, delay}
//   leaderboard  {version, leaderboard: [{userId, username, score, rank}], updatedAt}
//   score        {userId, newScore, rank}          your own score changed
//   error        {code, message}                   the server reported a problem

export class ScoreboardClient extends EventTarget {
  /**
   * @param {object} options
   * @param {() => Promise<string|null>} options.getToken  returns a bearer token (null: anonymous, needs SCOREBOARD_PUBLIC_READ)
   * @param {string} [options.baseUrl]   the service, default: this page's origin
   * @param {number} [options.baseDelay] first backoff ceiling in ms (default 500)
   * @param {number} [options.maxDelay]  backoff cap in ms (default 15000)
   */
  constructor({ getToken, baseUrl = window.location.origin, baseDelay = 500, maxDelay = 15000 }) {
    super();
    this.getToken = getToken;
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.version = -1;
    this.leaderboard = [];
    this.state = "stopped";
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.#connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "client stopped");
    this.#setState("stopped");
  }

  /** Ask the server for a fresh snapshot now. */
  resync() {
    this.#send({ type: "resync" });
  }

  #emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  #setState(state, extra = {}) {
    this.state = state;
    this.#emit("state", { state, attempt: this.attempt, ...extra });
  }

  #send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  async #ticketUrl() {
    const wsBase = this.baseUrl.replace(/^http/, "ws") + "/ws/leaderboard";
    const token = await this.getToken();
    if (!token) return wsBase;
    const response = await fetch(this.baseUrl + "/api/ws-ticket", {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
    if (!response.ok) throw new Error(`ws-ticket: HTTP ${response.status}`);
    const { ticket } = await response.json();
    return `${wsBase}?ticket=${encodeURIComponent(ticket)}`;
  }

  async #connect() {
    if (this.stopped) return;
    this.#setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let url;
    try {
      url = await this.#ticketUrl();
    } catch (error) {
      this.#scheduleReconnect();
      return;
    }
    if (this.stopped) return;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onmessage = (message) => this.#onMessage(message);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (!this.stopped) this.#scheduleReconnect(event.code, event.reason);
    };
  }

  #scheduleReconnect(code, reason) {
    // Full jitter: a random delay between 0 and the (capped) exponential ceiling, so that a
    // restarted server is not hit by every client at the same instant.
    const ceiling = Math.min(this.maxDelay, this.baseDelay * 2 ** this.attempt);
    const delay = Math.random() * ceiling;
    this.attempt += 1;
    this.#setState("reconnecting", { delay, code, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.#connect(), delay);
  }

  #onMessage(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    switch (event.type) {
      case "connection_success":
        // A fresh snapshot after every (re)connection: take it whatever its version.
        this.attempt = 0;
        this.#setState("connected", { connectionId: event.connectionId });
        this.#applyBoard(event, true);
        break;
      case "leaderboard_update":
        this.#applyBoard(event, false);
        break;
      case "score_update":
        this.#emit("score", event);
        break;
      case "error":
        this.#emit("error", event);
        break;
      default:
        break;
    }
  }

  #applyBoard(event, fresh) {
    if (!fresh && event.version <= this.version) return; // stale or duplicate: drop it
    this.version = event.version;
    this.leaderboard = event.leaderboard;
    this.#emit("leaderboard", {
      version: event.version,
      leaderboard: event.leaderboard,
      updatedAt: event.updatedAt ?? null,
    });
  }
}
