// The live top-10 page. Token, in order: window.scoreboardToken (string or async function,
// set by an integrator's script), "#token=<jwt>" in the URL, or - in development only -
// /dev/token for the user named by "?user=" (default: a viewer id kept in localStorage).
import { ScoreboardClient } from "/static/scoreboard-client.js";

const board = document.getElementById("board");
const connection = document.getElementById("connection");
const problem = document.getElementById("problem");
let token = null;
let meTimer = null;

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

function showProblem(text) {
  problem.textContent = text;
  problem.hidden = !text;
}

function setText(id, value) {
  document.getElementById(id).textContent = value;
}

async function refreshMe() {
  if (!token) return;
  try {
    const response = await fetch("/api/leaderboard/me", { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) return;
    const me = await response.json();
    setText("me-name", me.username);
    setText("me-rank", me.rank ?? "–");
    setText("me-score", me.score);
  } catch {
    // The server is away; keep the last values until the client reconnects.
  }
}

function scheduleMe() {
  clearTimeout(meTimer);
  meTimer = setTimeout(refreshMe, 300);
}

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

const client = new ScoreboardClient({ getToken });
client.addEventListener("state", (event) => {
  const { state } = event.detail;
  connection.dataset.state = state;
  connection.textContent = state === "connected" || state === "stopped" ? state : `${state}…`;
  if (state === "connected") scheduleMe();
});
client.addEventListener("leaderboard", (event) => {
  render(event.detail.leaderboard);
  board.dataset.version = event.detail.version;
  scheduleMe();
});
client.addEventListener("score", (event) => {
  setText("me-rank", event.detail.rank);
  setText("me-score", event.detail.newScore);
});
client.addEventListener("error", (event) => showProblem(event.detail.message));
window.scoreboardClient = client;
client.start();
