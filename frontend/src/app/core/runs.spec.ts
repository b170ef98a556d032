import { JobUpdate } from './jobs';
import { WorkflowRun, stages } from './runs';

const run: WorkflowRun = {
  id: 'run1', workflow: 'sensor_pipeline', state: 'RUNNING', stepsTotal: 2, stepsFinished: 1,
  createdAt: '2026-11-21T10:00:00Z', updatedAt: '2026-11-21T10:00:01Z', finishedAt: null,
  steps: [
    { jobId: 'run1', kind: 'INGEST', state: 'SUCCEEDED', createdAt: '2026-11-21T10:00:00Z' },
    { jobId: 'ev1', kind: 'EVALUATE', state: 'QUEUED', createdAt: '2026-11-21T10:00:01Z' },
  ],
};

function update(id: string, kind: JobUpdate['job']['kind'], state: JobUpdate['job']['state']): JobUpdate {
  return { cursor: '1-0', event: 'started', at: '2026-11-21T10:00:02Z', error: null, nextRunAt: null, workflowRunId: 'run1', progress: null, job: { id, kind, state, attempt: 1 } };
}

describe('stages', () => {
  it('lays the steps out by pipeline stage', () => {
    const laid = stages(run, new Map());
    expect(laid.map((s) => s.kind)).toEqual(['INGEST', 'EVALUATE', 'ALERT', 'NOTIFY']);
    expect(laid[0].steps.map((s) => s.jobId)).toEqual(['run1']);
    expect(laid[2].steps).toEqual([]);
  });

  it('prefers live events to the ledger, and shows jobs the ledger has not recorded yet', () => {
    const live = new Map([
      ['ev1', update('ev1', 'EVALUATE', 'RUNNING')],
      ['al1', update('al1', 'ALERT', 'QUEUED')],
    ]);
    const laid = stages(run, live);
    expect(laid[1].steps[0].state).toBe('RUNNING');
    expect(laid[2].steps.map((s) => [s.jobId, s.state])).toEqual([['al1', 'QUEUED']]);
  });

  it('draws a run from events alone before the ledger has it', () => {
    const laid = stages(null, new Map([['run1', update('run1', 'INGEST', 'RUNNING')]]));
    expect(laid[0].steps.map((s) => s.state)).toEqual(['RUNNING']);
  });
});
