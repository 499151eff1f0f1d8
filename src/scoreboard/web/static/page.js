// The live top-10 page. Token, in order: window.scoreboardToken (string or async function,
// set by an integrator's script), "#token=<jwt>" in the URL, or - in development only -
// /dev/token for the user named by "?user=" (default: a viewer id kept in localStorage).
// "?board=<id>" picks the board (default: global); the tabs switch boards live, on the same
// WebSocket, and keep the URL in step.
import { ScoreboardClient } from "/static/scoreboard-client.js";

const BOARD_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const board = document.getElementById("board");
const tabs = document.getElementById("boards");
const connection = document.getElementById("connection");
const countdown = document.getElementById("countdown");
const periodKey = document.getElementById("period");
const problem = document.getElementById("problem");
let token = null;
let meTimer = null;
let meRequest = 0;
let boards = new Map(); // the active boards from GET /api/boards, by id, in their order
let current = new URLSearchParams(location.search).get("board") || "global";
let periodEnd = null; // Date the shown period ends, or null (never)

function viewerId() {
  const fromQuery = new URLSearchParams(location.search).get("user");
  if (fromQuery) return fromQuery;
  let id = localStorage.getItem("scoreboard-viewer");
  if (!id) {
    id = "viewer-" + Math.random().toString(36).slice(2, 10);
    localStorage.setItem("scoreboard-viewer", id);
  }
  return id;
}

async function getToken() {
  if (typeof window.scoreboardToken === "function") return (token = await window.scoreboardToken());
  if (typeof window.scoreboardToken === "string") return (token = window.scoreboardToken);
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) return (token = fromHash);
  const response = await fetch(`/dev/token?user=${encodeURIComponent(viewerId())}`);
  if (response.status === 404) {
    showProblem("This page needs a token from the site that embeds it.");
    return null;
  }
  if (!response.ok) throw new Error(`dev token: HTTP ${response.status}`);
  return (token = (await response.json()).token);
}

/** GET a JSON resource of the API with the viewer's token; null when it cannot be had. */
async function getJson(path) {
  try {
    if (!token) await getToken();
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(path, { headers });
    return response.ok ? await response.json() : null;
  } catch {
    return null; // the server is away: keep what is shown until the client reconnects
  }
}

function showProblem(text) {
  problem.textContent = text;
  problem.hidden = !text;
}

function setText(id, value) {
  document.getElementById(id).textContent = value;
}

// -- the board on display: title, tabs, period and countdown ---------------------------------

function boardTitle(id) {
  return boards.get(id)?.title ?? id;
}

function showBoard() {
  const title = boardTitle(current);
  setText("board-title", title);
  document.title = `Scoreboard · ${title}`;
  for (const button of tabs.children) {
    if (button.dataset.board === current) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

function renderTabs() {
  const existing = new Map([...tabs.children].map((button) => [button.dataset.board, button]));
  const buttons = [...boards.values()].map((entry) => {
    const button = existing.get(entry.id) ?? document.createElement("button");
    button.type = "button";
    button.dataset.board = entry.id;
    button.textContent = entry.title;
    return button;
  });
  tabs.replaceChildren(...buttons);
  // One board and it is on display: nothing to switch to.
  tabs.hidden = buttons.length === 0 || (buttons.length === 1 && boards.has(current));
  showBoard();
}

async function loadBoards() {
  const list = await getJson("/api/boards");
  if (!list) return;
  boards = new Map(list.boards.filter((b) => b.status === "active").map((b) => [b.id, b]));
  renderTabs();
  const entry = boards.get(current);
  if (!entry) {
    showProblem(`There is no board "${current}": pick one above.`);
  } else if (!client.snapshot(current) && entry.current) {
    setPeriod(entry.current.key, entry.current.end); // until the first frame says it
  }
}

function setPeriod(key, end) {
  periodKey.textContent = key === "all" ? "all time" : key ?? "";
  periodKey.hidden = !key;
  periodEnd = end ? new Date(end) : null;
  tick();
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function tick() {
  if (!periodEnd) {
    countdown.textContent = "";
    countdown.hidden = true;
    return;
  }
  const seconds = Math.floor((periodEnd.getTime() - Date.now()) / 1000);
  countdown.hidden = false;
  if (seconds <= 0) {
    countdown.textContent = "a new period is starting…";
    return;
  }
  const days = Math.floor(seconds / 86400);
  const clock = `${pad(Math.floor(seconds / 3600) % 24)}:${pad(Math.floor(seconds / 60) % 60)}:${pad(seconds % 60)}`;
  countdown.textContent = `ends in ${days ? `${days}d ` : ""}${clock}`;
}

// Tick on the wall clock's whole seconds, as period ends are.
function tickEverySecond() {
  tick();
  setTimeout(tickEverySecond, 1000 - (Date.now() % 1000) + 10);
}

function switchTo(id) {
  if (id === current && client.state !== "stopped") return;
  current = id;
  client.setBoards([id]);
  board.replaceChildren();
  delete board.dataset.version;
  document.getElementById("empty").hidden = true;
  showProblem("");
  setText("me-rank", "–");
  setText("me-score", "–");
  const url = new URL(location.href);
  url.searchParams.set("board", id);
  history.replaceState(history.state, "", url);
  showBoard();
  const entry = boards.get(id);
  setPeriod(entry?.current?.key ?? null, entry?.current?.end ?? null);
  if (client.state === "stopped") client.start();
  refreshMe();
}

// -- the viewer's own standing ---------------------------------------------------------------

async function refreshMe() {
  if (!token) return;
  const request = ++meRequest;
  const me = await getJson(`/api/boards/${encodeURIComponent(current)}/me`);
  if (!me || request !== meRequest || me.board !== current) return; // stale: a newer one runs
  setText("me-name", me.username);
  setText("me-rank", me.rank ?? "–");
  setText("me-score", me.score);
}

function scheduleMe() {
  clearTimeout(meTimer);
  meTimer = setTimeout(refreshMe, 300);
}

// -- the table -------------------------------------------------------------------------------

// Rows are keyed by user id and moved, not rebuilt, so a rank change can animate: each row
// slides from where it was to where it is now (FLIP).
function render(entries) {
  const before = new Map([...board.children].map((row) => [row.dataset.user, row.getBoundingClientRect().top]));
  const rows = new Map([...board.children].map((row) => [row.dataset.user, row]));
  const fragment = document.createDocumentFragment();
  for (const entry of entries) {
    let row = rows.get(entry.userId);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.user = entry.userId;
      for (const name of ["rank", "name", "score"]) {
        const cell = document.createElement("td");
        cell.className = name;
        row.append(cell);
      }
      row.classList.add("entering");
    }
    const [rankCell, nameCell, scoreCell] = row.children;
    if (scoreCell.textContent !== String(entry.score) && scoreCell.textContent !== "") row.classList.add("bumped");
    rankCell.textContent = entry.rank;
    nameCell.textContent = entry.username;
    scoreCell.textContent = entry.score;
    fragment.append(row);
  }
  board.replaceChildren(fragment);
  for (const row of board.children) {
    const old = before.get(row.dataset.user);
    const now = row.getBoundingClientRect().top;
    if (old !== undefined && old !== now) {
      row.animate([{ transform: `translateY(${old - now}px)` }, { transform: "translateY(0)" }], {
        duration: 400,
        easing: "ease-out",
      });
    }
    setTimeout(() => row.classList.remove("entering", "bumped"), 600);
  }
  document.getElementById("empty").hidden = entries.length > 0;
}

// -- wiring ----------------------------------------------------------------------------------

if (!BOARD_ID.test(current)) {
  showProblem(`"${current}" is not a board id: showing the all-time board.`);
  current = "global";
}
const client = new ScoreboardClient({ getToken, boards: [current] });
client.addEventListener("state", (event) => {
  const { state } = event.detail;
  connection.dataset.state = state;
  connection.textContent = state === "connected" || state === "stopped" ? state : `${state}…`;
  if (state === "connected") {
    scheduleMe();
    loadBoards();
  }
});
client.addEventListener("leaderboard", (event) => {
  const detail = event.detail;
  if (detail.board !== current) return;
  render(detail.leaderboard);
  board.dataset.version = detail.version;
  setPeriod(detail.period, detail.periodEnd);
  scheduleMe();
});
client.addEventListener("reset", (event) => {
  if (event.detail.board !== current) return;
  // A new period: its (empty) board and its end come next; flash the new key meanwhile.
  periodKey.classList.remove("fresh");
  void periodKey.offsetWidth; // restart the animation
  periodKey.classList.add("fresh");
  setPeriod(event.detail.period, null);
  loadBoards();
});
client.addEventListener("score", (event) => {
  if (event.detail.board !== current) return;
  setText("me-rank", event.detail.rank);
  setText("me-score", event.detail.newScore);
});
client.addEventListener("error", (event) => {
  showProblem(event.detail.message);
  if (event.detail.code === "board_retired" || event.detail.code === "unknown_board") loadBoards();
});
tabs.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-board]");
  if (button) switchTo(button.dataset.board);
});
window.scoreboardClient = client;
showBoard();
tickEverySecond();
loadBoards();
client.start();
