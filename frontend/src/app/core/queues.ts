import { duration } from './format';

/** What the queue row's control button does next. */
export interface QueueControl {
  mutation: 'pauseQueue' | 'resumeQueue';
  label: 'Pause' | 'Resume';
}

export function queueAction(queue: { paused: boolean }): QueueControl {
  return queue.paused ? { mutation: 'resumeQueue', label: 'Resume' } : { mutation: 'pauseQueue', label: 'Pause' };
}

/** How long the next job has waited: '—' when none is ready. */
export function waitedFor(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '—' : duration(ms);
}
