// Scoreboard live client: a dependency-free ES module for browsers.
//
//   import { ScoreboardClient } from "/static/scoreboard-client.js";
//   const client = new ScoreboardClient({ getToken: async () => myJwt, boards: ["weekly"] });
//   client.addEventListener("leaderboard", (e) => render(e.detail.board, e.detail.leaderboard));
//   client.addEventListener("state", (e) => show(e.detail.state));
//   client.start();
//   client.setBoards(["daily"]);  // switch boards live, on the same connection
//
// It trades the token for a single-use ticket (POST /api/ws-ticket), connects to
// /ws/leaderboard?ticket=...&board=a,b, reconnects by itself with capped exponential backoff
// and full jitter, takes a fresh snapshot of every followed board on each (re)connection, and
// drops any leaderboard whose version is older than the one it holds for that board. A close
// with code 4404 (no such board) is final: it emits `error` and stops.
//
// Options (constructor):
//   getToken   async () => token | null   bearer token (null: anonymous, needs SCOREBOARD_PUBLIC_READ)
//   boards     ["global"]                 the boards to follow (ids; at most 10)
//   baseUrl    this page's origin         the service
//   baseDelay  500                        first backoff ceiling, ms
//   maxDelay   15000                      backoff cap, ms
//
// Methods:
//   start() / stop()
//   subscribe(boards)    follow these boards too (sent now if connected, kept for reconnects)
//   unsubscribe(boards)  stop following these boards
//   setBoards(boards)    follow exactly these: unsubscribes the others, subscribes the new ones
//   resync()             ask for a fresh snapshot of every followed board
//   snapshot(board)      the last `leaderboard` detail taken for a board, or null
// Properties: boards (the followed ids, an array), state.
// A board id that is not one (/^[a-z0-9][a-z0-9_-]{0,63}$/) throws a TypeError, following more
// than 10 boards a RangeError. (Un)subscribes are sent at most every 500 ms (quick switches
// coalesce). A subscribe the server refuses (unknown_board) is undone: those boards are no
// longer followed; so is a board the server reports retired (board_retired).
//
// Events (all CustomEvent, payload in `detail`):
//   state        {state: "connecting" | "connected" | "reconnecting" | "stopped", attempt,
//                 delay?, code?, reason?, connectionId?}
//   leaderboard  {board, period, periodEnd, version, leaderboard: [{userId, username, score, rank}],
//                 updatedAt}                           periodEnd: ISO time, null if it never resets
//   reset        {board, period, previousPeriod}      a new period began; its (empty) board follows
//   score        {board, period, userId, newScore, rank}   your own score changed on a followed board
//   error        {code, message, board?}              the server reported a problem; codes include
//                 unknown_board, too_many_boards, board_retired, rate_limited, invalid_message

export const MAX_BOARDS = 10;
const BOARD_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const NOT_FOUND = 4404;
const SYNC_GAP = 500; // ms between two rounds of (un)subscribe messages

function boardIds(boards) {
  const ids = [...new Set(typeof boards === "string" ? [boards] : boards)];
  for (const id of ids) {
    if (typeof id !== "string" || !BOARD_ID.test(id)) throw new TypeError(`not a board id: ${id}`);
  }
  return ids;
}

// The board an error message names ("there is no board 'x'", "board 'x' was retired").
function namedBoard(message) {
  return /board '([a-z0-9][a-z0-9_-]*)'/.exec(message ?? "")?.[1] ?? null;
}

export class ScoreboardClient extends EventTarget {
  #followed; // boards this client wants, in order
  #serverBoards = new Set(); // boards the current connection follows, as far as we told it
  #pending = []; // subscribe requests not yet confirmed by a snapshot of each board
  #unsent = new Set(); // boards subscribed since the last sync: each needs a first snapshot
  #versions = new Map(); // board -> newest version taken
  #snapshots = new Map(); // board -> last leaderboard detail
  #run = 0; // bumped by start() and stop(): a connect attempt of an older run gives up
  #lastSync = 0; // when the last (un)subscribe was sent
  #syncTimer = null;

  /**
   * @param {object} options
   * @param {() => Promise<string|null>} options.getToken  returns a bearer token (null: anonymous)
   * @param {string[]} [options.boards] board ids to follow (default ["global"])
   * @param {string} [options.baseUrl]   the service, default: this page's origin
   * @param {number} [options.baseDelay] first backoff ceiling in ms (default 500)
   * @param {number} [options.maxDelay]  backoff cap in ms (default 15000)
   */
  constructor({
    getToken,
    boards = ["global"],
    baseUrl = window.location.origin,
    baseDelay = 500,
    maxDelay = 15000,
  }) {
    super();
    this.getToken = getToken;
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.#followed = boardIds(boards);
    if (this.#followed.length > MAX_BOARDS) throw new RangeError(`at most ${MAX_BOARDS} boards`);
    this.state = "stopped";
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.stopped = true;
  }

  /** The boards followed (and followed again after every reconnect). */
  get boards() {
    return [...this.#followed];
  }

  /** The last leaderboard taken for a followed board, or null. */
  snapshot(board) {
    return this.#snapshots.get(board) ?? null;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this.#run += 1;
    this.#connect();
  }

  stop() {
    this.stopped = true;
    this.#run += 1;
    clearTimeout(this.timer);
    clearTimeout(this.#syncTimer);
    this.#syncTimer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "client stopped");
    this.#setState("stopped");
  }

  /** Ask the server for a fresh snapshot of every followed board now. */
  resync() {
    this.#send({ type: "resync" });
  }

  /** Follow these boards as well. Their first frame is taken whatever its version. */
  subscribe(boards) {
    this.#follow(boardIds(boards), this.#followed);
    this.#sync();
  }

  /** Stop following these boards. */
  unsubscribe(boards) {
    this.#unfollow(boardIds(boards));
    this.#sync();
  }

  /** Follow exactly these boards: the others are unsubscribed, the new ones subscribed. */
  setBoards(boards) {
    const wanted = boardIds(boards);
    const kept = this.#followed.filter((id) => wanted.includes(id));
    this.#follow(wanted, kept);
    this.#unfollow(this.#followed.filter((id) => !wanted.includes(id)));
    this.#sync();
  }

  // Add the boards not yet followed, checking the limit against `base` (what stays followed).
  #follow(ids, base) {
    const added = ids.filter((id) => !this.#followed.includes(id));
    if (base.length + added.length > MAX_BOARDS) {
      throw new RangeError(`a connection follows at most ${MAX_BOARDS} boards`);
    }
    for (const id of added) {
      this.#followed.push(id);
      this.#forget(id);
      this.#unsent.add(id);
    }
  }

  #unfollow(ids) {
    this.#followed = this.#followed.filter((id) => !ids.includes(id));
    for (const id of ids) this.#forget(id);
  }

  #forget(board) {
    this.#versions.delete(board);
    this.#snapshots.delete(board);
    this.#unsent.delete(board);
  }

  #emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  #setState(state, extra = {}) {
    this.state = state;
    this.#emit("state", { state, attempt: this.attempt, ...extra });
  }

  #open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  #send(message) {
    if (!this.#open()) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  // Tell the connection what changed in the followed set (nothing to do while disconnected:
  // the next connection asks for the followed boards in its URL). At most one round per
  // SYNC_GAP: quick switches coalesce, and stay well inside the server's message rate.
  #sync() {
    if (!this.#open() || this.state !== "connected") return;
    const wait = this.#lastSync + SYNC_GAP - Date.now();
    if (wait > 0) {
      this.#syncTimer ??= setTimeout(() => {
        this.#syncTimer = null;
        this.#sync();
      }, wait);
      return;
    }
    const stale = [...this.#serverBoards].filter((id) => !this.#followed.includes(id));
    const fresh = this.#followed.filter((id) => !this.#serverBoards.has(id));
    // Dropped and taken back before the server heard of either: it still follows the board,
    // so only a resync brings the first snapshot this client now waits for.
    const again = [...this.#unsent].filter((id) => this.#serverBoards.has(id));
    this.#unsent.clear();
    if (!stale.length && !fresh.length && !again.length) return;
    this.#lastSync = Date.now();
    if (stale.length && this.#send({ type: "unsubscribe", boards: stale })) {
      for (const id of stale) this.#serverBoards.delete(id);
    }
    if (fresh.length && this.#send({ type: "subscribe", boards: fresh })) {
      for (const id of fresh) this.#serverBoards.add(id);
      this.#pending.push(new Set(fresh));
    }
    if (again.length) this.#send({ type: "resync" });
  }

  async #ticketUrl() {
    const wsBase = this.baseUrl.replace(/^http/, "ws") + "/ws/leaderboard";
    const token = await this.getToken();
    if (!token) return `${wsBase}?`;
    const response = await fetch(this.baseUrl + "/api/ws-ticket", {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
    if (!response.ok) throw new Error(`ws-ticket: HTTP ${response.status}`);
    const { ticket } = await response.json();
    return `${wsBase}?ticket=${encodeURIComponent(ticket)}&`;
  }

  async #connect() {
    if (this.stopped) return;
    const run = this.#run;
    this.#setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let url;
    try {
      url = await this.#ticketUrl();
    } catch (error) {
      if (run === this.#run) this.#scheduleReconnect();
      return;
    }
    if (this.stopped || run !== this.#run) return;
    // With no board left the server would pick `global`: ask for it and drop it on arrival.
    const boards = this.#followed.length ? [...this.#followed] : ["global"];
    const socket = new WebSocket(url + "board=" + boards.join(","));
    this.socket = socket;
    this.#serverBoards = new Set(boards);
    this.#pending = [];
    this.#lastSync = 0;
    socket.onmessage = (message) => {
      if (this.socket === socket) this.#onMessage(message);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (event.code === NOT_FOUND) {
        // A board in the URL is unknown or retired: asking again would fail forever.
        const message = event.reason || "no such board";
        this.#emit("error", { code: "unknown_board", message, board: namedBoard(message) });
        this.stop();
        return;
      }
      this.#scheduleReconnect(event.code, event.reason);
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
        // A fresh snapshot of every board after each (re)connection: take each whatever its
        // version (a restarted server may count again from a lower one).
        this.attempt = 0;
        this.#versions.clear();
        this.#unsent.clear();
        this.#setState("connected", { connectionId: event.connectionId });
        this.#applyBoard(event);
        this.#sync(); // boards (un)subscribed while the connection was being made
        break;
      case "leaderboard_update":
        this.#applyBoard(event);
        break;
      case "board_reset":
        if (this.#followed.includes(event.board)) {
          this.#emit("reset", {
            board: event.board,
            period: event.period,
            previousPeriod: event.previousPeriod,
          });
        }
        break;
      case "score_update":
        if (this.#followed.includes(event.board)) {
          const { board, period, userId, newScore, rank } = event;
          this.#emit("score", { board, period, userId, newScore, rank });
        }
        break;
      case "error":
        this.#onError(event);
        break;
      default:
        break;
    }
  }

  #onError({ code, message }) {
    const board = namedBoard(message);
    if (code === "unknown_board" || code === "too_many_boards") {
      // A subscribe was refused whole: stop wanting the boards it asked for.
      const index = board
        ? this.#pending.findIndex((request) => request.has(board))
        : this.#pending.length - 1;
      const [refused] = index >= 0 ? this.#pending.splice(index, 1) : [];
      for (const id of refused ?? []) {
        this.#serverBoards.delete(id);
        this.#followed = this.#followed.filter((followed) => followed !== id);
        this.#forget(id);
      }
    } else if (code === "board_retired" && board) {
      // The server no longer sends it, and would refuse it on the next connection.
      this.#serverBoards.delete(board);
      this.#followed = this.#followed.filter((id) => id !== board);
      this.#forget(board);
    }
    this.#emit("error", board ? { code, message, board } : { code, message });
  }

  #applyBoard(event) {
    const { board } = event;
    if (!this.#followed.includes(board)) {
      // Not (or no longer) wanted, e.g. the default board of a connection made with none.
      if (this.#serverBoards.delete(board)) this.#send({ type: "unsubscribe", boards: [board] });
      return;
    }
    for (const request of this.#pending) request.delete(board);
    this.#pending = this.#pending.filter((request) => request.size > 0);
    const held = this.#versions.get(board);
    if (held !== undefined && event.version <= held) return; // stale or duplicate: drop it
    this.#versions.set(board, event.version);
    const detail = {
      board,
      period: event.period,
      periodEnd: event.periodEnd ?? null,
      version: event.version,
      leaderboard: event.leaderboard,
      updatedAt: event.updatedAt ?? null,
    };
    this.#snapshots.set(board, detail);
    this.#emit("leaderboard", detail);
  }
}
