// Compiled with `tsc --noEmit` by tests/web/test_typescript.py: the declarations must accept
// what the README shows, and refuse what the client would refuse.
import { MAX_BOARDS, ScoreboardClient, type LeaderboardEntry } from "./scoreboard-client.js";

const client = new ScoreboardClient({
  getToken: async () => "a-jwt",
  boards: ["global", "weekly"],
  baseDelay: 250,
});
client.addEventListener("leaderboard", (event) => {
  const rows: LeaderboardEntry[] = event.detail.leaderboard;
  const ends: string | null = event.detail.periodEnd;
  console.log(event.detail.board, rows.map((row) => `${row.rank}. ${row.username} ${row.score}`), ends);
});
client.addEventListener("state", (event) => console.log(event.detail.state, event.detail.attempt));
client.addEventListener("reset", (event) => console.log(event.detail.previousPeriod));
client.addEventListener("score", (event) => console.log(event.detail.newScore + 1));
client.addEventListener("error", (event) => console.log(event.detail.code, event.detail.board));
client.start();
client.setBoards(["daily"]);
client.subscribe("weekly");
client.unsubscribe(["weekly"]);
client.resync();
const last = client.snapshot("daily");
console.log(last?.version, client.boards.length <= MAX_BOARDS, client.state);
client.stop();

// @ts-expect-error getToken is required
new ScoreboardClient({ boards: ["global"] });
// @ts-expect-error a token is a string or null
new ScoreboardClient({ getToken: async () => 42 });
// @ts-expect-error leaderboard entries have no `points`
client.addEventListener("leaderboard", (event) => event.detail.leaderboard[0].points);
