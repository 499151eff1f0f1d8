// Type declarations for scoreboard-client.js (the live leaderboard client, an ES module).
// The wire protocol it speaks is described in /schema/asyncapi.json.

/** At most this many boards per client (and per connection). */
export declare const MAX_BOARDS: 10;

export interface LeaderboardEntry {
  userId: string;
  username: string;
  score: number;
  /** Competition ranking: ties share a rank, the next rank skips. */
  rank: number;
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "stopped";

export interface StateDetail {
  state: ConnectionState;
  attempt: number;
  /** ms until the next attempt (reconnecting). */
  delay?: number;
  /** The close code that ended the last connection. */
  code?: number;
  reason?: string;
  connectionId?: string;
}

export interface LeaderboardDetail {
  board: string;
  period: string;
  /** When the period ends (ISO 8601), null if the board never resets. */
  periodEnd: string | null;
  version: number;
  leaderboard: LeaderboardEntry[];
  updatedAt?: string;
}

export interface ResetDetail {
  board: string;
  period: string;
  previousPeriod: string;
}

export interface ScoreDetail {
  board: string;
  period: string;
  userId: string;
  newScore: number;
  rank: number;
}

export interface ErrorDetail {
  /** e.g. unknown_board, too_many_boards, board_retired, rate_limited, invalid_message */
  code: string;
  message: string;
  board?: string;
}

export interface ScoreboardClientEventMap {
  state: CustomEvent<StateDetail>;
  leaderboard: CustomEvent<LeaderboardDetail>;
  reset: CustomEvent<ResetDetail>;
  score: CustomEvent<ScoreDetail>;
  error: CustomEvent<ErrorDetail>;
}

export interface ScoreboardClientOptions {
  /** Returns a bearer token, or null to connect anonymously (needs SCOREBOARD_PUBLIC_READ). */
  getToken: () => Promise<string | null>;
  /** Board ids to follow (default ["global"]); each matches /^[a-z0-9][a-z0-9_-]{0,63}$/. */
  boards?: string[];
  /** The service (default: this page's origin). */
  baseUrl?: string;
  /** First backoff ceiling in ms (default 500). */
  baseDelay?: number;
  /** Backoff cap in ms (default 15000). */
  maxDelay?: number;
}

export declare class ScoreboardClient extends EventTarget {
  /** Throws TypeError for a malformed board id, RangeError for more than MAX_BOARDS boards. */
  constructor(options: ScoreboardClientOptions);
  getToken: () => Promise<string | null>;
  readonly baseUrl: string;
  baseDelay: number;
  maxDelay: number;
  state: ConnectionState;
  attempt: number;
  /** The boards followed (and followed again after every reconnect). */
  readonly boards: string[];
  /** The last leaderboard taken for a followed board, or null. */
  snapshot(board: string): LeaderboardDetail | null;
  start(): void;
  stop(): void;
  /** Ask the server for a fresh snapshot of every followed board now. */
  resync(): void;
  /** Follow these boards as well. */
  subscribe(boards: string | string[]): void;
  /** Stop following these boards. */
  unsubscribe(boards: string | string[]): void;
  /** Follow exactly these boards. */
  setBoards(boards: string | string[]): void;

  addEventListener<K extends keyof ScoreboardClientEventMap>(
    type: K,
    listener: (this: ScoreboardClient, event: ScoreboardClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof ScoreboardClientEventMap>(
    type: K,
    listener: (this: ScoreboardClient, event: ScoreboardClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
