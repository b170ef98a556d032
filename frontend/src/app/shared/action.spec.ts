import { signal } from '@angular/core';
import { runAction } from './action';

describe('runAction', () => {
  it('is busy while the work runs, then reloads', async () => {
    const busy = signal(false);
    const seen: string[] = [];
    await runAction(
      busy,
      async () => {
        seen.push(`work busy=${busy()}`);
      },
      () => seen.push('failed'),
      async () => {
        seen.push(`after busy=${busy()}`);
      },
    );
    expect(seen).toEqual(['work busy=true', 'after busy=false']);
  });

  it('hands a failure over and still reloads', async () => {
    const busy = signal(false);
    const failures: unknown[] = [];
    let reloaded = false;
    await runAction(
      busy,
      async () => {
        throw new Error('refused');
      },
      (e) => failures.push(e),
      async () => {
        reloaded = true;
      },
    );
    expect((failures[0] as Error).message).toBe('refused');
    expect(reloaded).toBe(true);
    expect(busy()).toBe(false);
  });
});
