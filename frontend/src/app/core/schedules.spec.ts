import { scheduleFieldOf, scheduleInput } from './schedules';

describe('schedule form', () => {
  const form = { name: 'nightly', cron: '0 2 * * *', timeZone: 'Europe/Berlin', kind: 'EVALUATE' as const, payload: '{"sensor":"boiler-1"}', missed: 'SKIP' as const };

  it('builds the mutation input, UTC when no zone is given', () => {
    expect(scheduleInput(form)).toEqual({
      input: { name: 'nightly', cron: '0 2 * * *', timeZone: 'Europe/Berlin', kind: 'EVALUATE', payload: { sensor: 'boiler-1' }, missed: 'SKIP' },
    });
    expect(scheduleInput({ ...form, timeZone: ' ' })).toMatchObject({ input: { timeZone: 'UTC' } });
  });

  it('names the field that is plainly wrong', () => {
    expect(scheduleInput({ ...form, cron: '* * *' })).toMatchObject({ field: 'cron' });
    expect(scheduleInput({ ...form, payload: '{nope' })).toMatchObject({ field: 'payload' });
    expect(scheduleInput({ ...form, name: '' })).toMatchObject({ field: 'name' });
  });

  it('puts a server error at the field it names', () => {
    expect(scheduleFieldOf('input.payload.sensor')).toBe('payload');
    expect(scheduleFieldOf('input.timeZone')).toBe('timeZone');
    expect(scheduleFieldOf('input.cron')).toBe('cron');
    expect(scheduleFieldOf(undefined)).toBeNull();
  });
});
