import { JobKind, JobState, JobUpdate } from './jobs';

export interface RunStep {
  jobId: string;
  kind: JobKind | null;
  state: JobState | null;
  createdAt: string;
}

export interface WorkflowRun {
  id: string;
  workflow: string;
  state: string;
  stepsTotal: number;
  stepsFinished: number;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  steps: RunStep[];
}

export const RUN_FIELDS = 'id workflow state stepsTotal stepsFinished createdAt updatedAt finishedAt steps { jobId kind state createdAt }';

/** The sensor pipeline's stages, in order. */
export const STAGES: JobKind[] = ['INGEST', 'EVALUATE', 'ALERT', 'NOTIFY'];

export interface Stage {
  kind: JobKind;
  steps: RunStep[];
}

/**
 * The run's steps by stage. The ledger's steps are merged with what live events have
 * said since: an event is newer than the ledger's copy, and a job the ledger has not
 * recorded yet still shows up.
 */
export function stages(run: WorkflowRun | null, live: ReadonlyMap<string, JobUpdate>): Stage[] {
  const steps = new Map<string, RunStep>();
  for (const step of run?.steps ?? []) steps.set(step.jobId, step);
  for (const update of live.values()) {
    const known = steps.get(update.job.id);
    steps.set(update.job.id, {
      jobId: update.job.id,
      kind: update.job.kind ?? known?.kind ?? null,
      state: update.job.state,
      createdAt: known?.createdAt ?? update.at,
    });
  }
  const all = [...steps.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  return STAGES.map((kind) => ({ kind, steps: all.filter((s) => s.kind === kind) }));
}
