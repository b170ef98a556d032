import { JobRow, JobUpdate, applyJobUpdate } from './jobs';

function row(id: string, state: JobRow['state']): JobRow {
  return { id, kind: 'INGEST', state, attempt: 0, maxAttempts: 5, workflowRunId: id, createdAt: '2026-11-21T10:00:00Z', updatedAt: null, lastError: null, nextRunAt: null };
}

function update(id: string, event: string, state: JobRow['state'], extra: Partial<JobUpdate> = {}): JobUpdate {
  return { cursor: '1-0', event, at: '2026-11-21T10:00:01Z', error: null, nextRunAt: null, workflowRunId: null, progress: null, job: { id, kind: 'INGEST', state, attempt: 1 }, ...extra };
}

describe('applyJobUpdate', () => {
  it('moves a listed job to its new state, keeping its last error', () => {
    const rows = [row('a', 'RUNNING'), row('b', 'QUEUED')];
    const failed = applyJobUpdate(rows, update('a', 'retry_scheduled', 'RETRYING', { error: 'HTTP 500', nextRunAt: '2026-11-21T10:00:05Z' }), null);
    expect(failed[0]).toMatchObject({ state: 'RETRYING', lastError: 'HTTP 500', nextRunAt: '2026-11-21T10:00:05Z' });
    const started = applyJobUpdate(failed, update('a', 'started', 'RUNNING'), null);
    expect(started[0]).toMatchObject({ state: 'RUNNING', lastError: 'HTTP 500', nextRunAt: null });
    expect(started[1]).toBe(rows[1]);
  });

  it('adds a job created after the list was loaded, on top', () => {
    const rows = applyJobUpdate([row('a', 'SUCCEEDED')], update('n', 'enqueued', 'QUEUED', { workflowRunId: 'n' }), null);
    expect(rows.map((r) => r.id)).toEqual(['n', 'a']);
    expect(rows[0].workflowRunId).toBe('n');
  });

  it('does not add jobs outside the states shown, nor jobs it never saw created', () => {
    expect(applyJobUpdate([], update('n', 'enqueued', 'QUEUED'), ['DEAD'])).toEqual([]);
    expect(applyJobUpdate([], update('old', 'succeeded', 'SUCCEEDED'), null)).toEqual([]);
  });

  it('keeps a search by subject or key to the jobs it listed (the live stream cannot filter by them)', () => {
    const listed = [row('a', 'QUEUED')];
    expect(applyJobUpdate(listed, update('n', 'enqueued', 'QUEUED'), null, 500, true).map((r) => r.id)).toEqual(['a']);
    expect(applyJobUpdate(listed, update('a', 'started', 'RUNNING'), null, 500, true)[0].state).toBe('RUNNING');
  });

  it('never grows past its limit', () => {
    const rows = Array.from({ length: 3 }, (_, i) => row(`r${i}`, 'QUEUED'));
    expect(applyJobUpdate(rows, update('n', 'enqueued', 'QUEUED'), null, 3).map((r) => r.id)).toEqual(['n', 'r0', 'r1']);
  });
});
