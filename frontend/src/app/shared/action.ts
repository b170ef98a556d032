import { WritableSignal } from '@angular/core';

/**
 * Runs one of a page's actions: `busy` while it runs (buttons disable), a failure handed to
 * `failed` (shown where the page wants it), then `after` (usually a reload) whatever happened,
 * so the page never shows a state the server no longer has.
 */
export async function runAction(
  busy: WritableSignal<boolean>,
  work: () => Promise<void>,
  failed: (e: unknown) => void,
  after?: () => Promise<void>,
): Promise<void> {
  busy.set(true);
  try {
    await work();
  } catch (e) {
    failed(e);
  } finally {
    busy.set(false);
    if (after) await after();
  }
}
