import { TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';
import { FakeSocket } from '../../testing/fake-socket';
import { GraphqlCall, fakeGraphql, storeSession } from '../../testing/fake-server';
import { Live } from '../core/live';
import { DeadPage, jobsCount } from './dead';

const group = { kind: 'NOTIFY', fingerprint: 'notify:HTTP # from receiver', count: 2, sampleError: 'HTTP 500 from receiver', lastDiedAt: '2026-11-21T10:00:00Z' };
const job = (id: string) => ({ id, kind: 'NOTIFY', error: 'HTTP 500 from receiver', fingerprint: group.fingerprint, attempts: 3, maxAttempts: 3, workflowRunId: null, diedAt: '2026-11-21T10:00:00Z' });

function answer(call: GraphqlCall) {
  if (call.query.includes('deadJobGroups')) return { data: { deadJobGroups: [group], deadJobs: { nodes: [job('A'), job('B')] } } };
  if (call.query.includes('auditLog')) return { data: { auditLog: { nodes: [] } } };
  if (call.query.includes('discardDeadJobs')) return { data: { discardDeadJobs: (call.variables['ids'] as string[]).length } };
  if (call.query.includes('requeueDeadJobs')) return { data: { requeueDeadJobs: (call.variables['filter'] as { ids: string[] }).ids.length } };
  return { data: {} };
}

describe('DeadPage', () => {
  beforeEach(() => {
    localStorage.clear();
    FakeSocket.sockets.length = 0;
    TestBed.configureTestingModule({ providers: [provideRouter([])] });
    TestBed.inject(Live).webSocketImpl = FakeSocket;
  });
  afterEach(() => vi.unstubAllGlobals());

  async function render() {
    const fixture = TestBed.createComponent(DeadPage);
    await fixture.whenStable();
    await new Promise((r) => setTimeout(r, 0));
    await fixture.whenStable();
    return { fixture, element: fixture.nativeElement as HTMLElement };
  }

  it('counts in words', () => {
    expect(jobsCount(1)).toBe('1 dead job');
    expect(jobsCount(3)).toBe('3 dead jobs');
  });

  it('is read-only for a viewer: rows, but no actions', async () => {
    storeSession('VIEWER');
    fakeGraphql(answer);
    const { element } = await render();
    expect(element.querySelector('[data-testid="read-only"]')).not.toBeNull();
    expect(element.querySelectorAll('[data-dead]')).toHaveLength(2);
    const buttons = [...element.querySelectorAll('button')].map((b) => b.textContent?.trim());
    expect(buttons.some((text) => /Requeue|Discard/.test(text ?? ''))).toBe(false);
    expect(element.querySelectorAll('input[type="checkbox"]')).toHaveLength(0);
  });

  it('asks an admin to confirm with the number of jobs, then requeues exactly the selection', async () => {
    storeSession('ADMIN');
    const calls = fakeGraphql(answer);
    const { fixture, element } = await render();
    const page = fixture.componentInstance;
    page.toggle('A');
    page.toggle('B');
    page.askRequeueSelected();
    await fixture.whenStable();
    expect(element.querySelector('[role="alertdialog"]')?.textContent).toContain('Requeue 2 dead jobs?');
    expect(calls.some((c) => c.query.includes('requeueDeadJobs'))).toBe(false);
    await page.confirm();
    await fixture.whenStable();
    const requeue = calls.find((c) => c.query.includes('requeueDeadJobs'));
    expect(requeue?.variables).toEqual({ filter: { ids: ['A', 'B'] } });
    expect(element.querySelector('[data-testid="done"]')?.textContent).toContain('Requeued 2 dead jobs.');
  });

  it('discards a selection in one call, not one per job', async () => {
    storeSession('ADMIN');
    const calls = fakeGraphql(answer);
    const { fixture, element } = await render();
    const page = fixture.componentInstance;
    page.toggleAll();
    page.askDiscardSelected();
    await fixture.whenStable();
    expect(element.querySelector('[role="alertdialog"]')?.textContent).toContain('Discard 2 dead jobs for good?');
    await page.confirm();
    await fixture.whenStable();
    const discards = calls.filter((c) => c.query.includes('discardDeadJob'));
    expect(discards).toHaveLength(1);
    expect(discards[0].variables).toEqual({ ids: ['A', 'B'] });
    expect(element.querySelector('[data-testid="done"]')?.textContent).toContain('Discarded 2 dead jobs.');
  });
});
