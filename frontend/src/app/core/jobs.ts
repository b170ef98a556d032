/** Job shapes shared by the pages that list and follow jobs. */
export type JobState = 'QUEUED' | 'SCHEDULED' | 'RUNNING' | 'RETRYING' | 'SUCCEEDED' | 'DEAD' | 'CANCELLED';
export type JobKind = 'INGEST' | 'EVALUATE' | 'ALERT' | 'NOTIFY' | 'SILENCE_CHECK';

export const JOB_KINDS: JobKind[] = ['INGEST', 'EVALUATE', 'ALERT', 'NOTIFY', 'SILENCE_CHECK'];
export const JOB_STATES: JobState[] = ['QUEUED', 'SCHEDULED', 'RUNNING', 'RETRYING', 'SUCCEEDED', 'DEAD', 'CANCELLED'];
export const WAITING: JobState[] = ['QUEUED', 'SCHEDULED', 'RETRYING', 'RUNNING'];

export interface JobRow {
  id: string;
  kind: JobKind | null;
  state: JobState;
  attempt: number;
  maxAttempts: number | null;
  workflowRunId: string | null;
  createdAt: string | null;
  updatedAt: string | null;
  lastError: string | null;
  nextRunAt: string | null;
}

export const JOB_ROW_FIELDS = 'id kind state attempt maxAttempts workflowRunId createdAt updatedAt lastError nextRunAt';

/** One `jobUpdates` item, with only the fields a job event carries (no extra reads). */
export interface JobUpdate {
  cursor: string;
  event: string;
  at: string;
  error: string | null;
  nextRunAt: string | null;
  workflowRunId: string | null;
  /** What a `progress` event reported. */
  progress: { percent: number; message: string } | null;
  job: { id: string; kind: JobKind | null; state: JobState; attempt: number };
}

export const JOB_UPDATE_FIELDS = 'cursor event at error nextRunAt workflowRunId progress { percent message } job { id kind state attempt }';

/** Events that bring a job into existence. */
const CREATED = new Set(['enqueued', 'scheduled']);

/**
 * A list after one live update: a listed job takes the new state; a job created since the
 * list was loaded is added on top when it matches the states shown (the server already
 * filters by kind and run), unless `onlyListed` (a search by subject or key, which the live
 * stream cannot filter by: new matches appear on reload). The list never grows past `limit`.
 */
export function applyJobUpdate(
  rows: readonly JobRow[],
  update: JobUpdate,
  states: readonly JobState[] | null,
  limit = 500,
  onlyListed = false,
): JobRow[] {
  const index = rows.findIndex((row) => row.id === update.job.id);
  if (index >= 0) {
    const row = rows[index];
    const next: JobRow = {
      ...row,
      state: update.job.state,
      attempt: update.job.attempt,
      updatedAt: update.at,
      lastError: update.error ?? row.lastError,
      nextRunAt: update.nextRunAt,
    };
    return [...rows.slice(0, index), next, ...rows.slice(index + 1)];
  }
  if (onlyListed || !CREATED.has(update.event)) return [...rows];
  if (states && states.length > 0 && !states.includes(update.job.state)) return [...rows];
  const created: JobRow = {
    id: update.job.id,
    kind: update.job.kind,
    state: update.job.state,
    attempt: update.job.attempt,
    maxAttempts: null,
    workflowRunId: update.workflowRunId,
    createdAt: update.at,
    updatedAt: update.at,
    lastError: null,
    nextRunAt: update.nextRunAt,
  };
  return [created, ...rows].slice(0, limit);
}
