import { queueAction, waitedFor } from './queues';

describe('queue controls', () => {
  it('offers pause on a running queue and resume on a paused one', () => {
    expect(queueAction({ paused: false })).toEqual({ mutation: 'pauseQueue', label: 'Pause' });
    expect(queueAction({ paused: true })).toEqual({ mutation: 'resumeQueue', label: 'Resume' });
  });

  it('shows the oldest wait, and a dash when nothing is ready', () => {
    expect(waitedFor(null)).toBe('—');
    expect(waitedFor(undefined)).toBe('—');
    expect(waitedFor(340)).toBe('340 ms');
    expect(waitedFor(2_400)).toBe('2.4 s');
    expect(waitedFor(185_000)).toBe('3 min 5 s');
  });
});
