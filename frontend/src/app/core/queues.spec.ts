import { limitsForm, limitsInput, limitsSummary, queueAction, waitedFor } from './queues';

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

describe('queue limits', () => {
  const empty = { concurrency: '', perKeyConcurrency: '', rate: '', rateWindowMs: '', perKeyRate: '', perKeyRateWindowMs: '' };

  it('turns the form into the mutation input, empty fields meaning no limit', () => {
    expect(limitsInput({ ...empty, perKeyConcurrency: '1', perKeyRate: '5', perKeyRateWindowMs: '1000' })).toEqual({
      limits: { concurrency: null, perKeyConcurrency: 1, rate: null, perKeyRate: { limit: 5, windowMs: 1000 } },
    });
    expect(limitsInput(empty)).toEqual({ limits: { concurrency: null, perKeyConcurrency: null, rate: null, perKeyRate: null } });
  });

  it('names the field that is wrong', () => {
    expect(limitsInput({ ...empty, concurrency: '-1' })).toEqual({ field: 'concurrency', error: 'a whole number from 1 (empty for no limit)' });
    expect(limitsInput({ ...empty, concurrency: '2.5' })).toMatchObject({ field: 'concurrency' });
    expect(limitsInput({ ...empty, rate: '10' })).toEqual({ field: 'rateWindowMs', error: 'a rate needs a window in milliseconds' });
    expect(limitsInput({ ...empty, perKeyRateWindowMs: '100' })).toEqual({ field: 'perKeyRate', error: 'a rate needs a number of jobs' });
  });

  it('round-trips what the API holds and sums it up for the queue row', () => {
    const limits = { concurrency: 8, perKeyConcurrency: 1, rate: null, perKeyRate: { limit: 5, windowMs: 1000 } };
    const form = limitsForm(limits);
    expect(limitsInput(form)).toEqual({ limits });
    expect(limitsSummary(limits)).toBe('≤8 running, ≤1 per key, 5/1.0 s per key');
    expect(limitsSummary({ concurrency: null, perKeyConcurrency: null, rate: null, perKeyRate: null })).toBe('—');
  });
});
