import { TestBed } from '@angular/core/testing';
import { FakeSocket } from '../../testing/fake-socket';
import { authPayload, fakeGraphql, storeSession } from '../../testing/fake-server';
import { Live } from './live';

interface Update {
  jobUpdates: { cursor: string };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('Live', () => {
  let live: Live;
  let seen: string[];

  beforeEach(() => {
    localStorage.clear();
    FakeSocket.sockets.length = 0;
    storeSession('ADMIN');
    live = TestBed.inject(Live);
    live.webSocketImpl = FakeSocket;
    seen = [];
  });
  afterEach(() => vi.unstubAllGlobals());

  function follow(expired?: () => void) {
    return live.subscribe<Update>({
      query: 'subscription ($after: String) { jobUpdates(after: $after) { cursor } }',
      cursor: 'c0',
      variables: (cursor) => ({ after: cursor ?? null }),
      cursorOf: (data) => data.jobUpdates.cursor,
      next: (data) => seen.push(data.jobUpdates.cursor),
      expired,
    });
  }

  it('subscribes from the list cursor with the access token, and goes live', async () => {
    const handle = follow();
    await until(() => FakeSocket.sockets[0]?.subscriptions.length === 1, 'the subscription');
    const socket = FakeSocket.latest();
    expect(socket.init).toEqual({ authorization: 'Bearer access-1' });
    expect(socket.subscriptions[0].variables).toEqual({ after: 'c0' });
    expect(live.status()).toBe('live');
    socket.next({ jobUpdates: { cursor: 'c1' } });
    socket.next({ jobUpdates: { cursor: 'c2' } });
    expect(seen).toEqual(['c1', 'c2']);
    handle.close();
    expect(live.status()).toBe('idle');
  });

  it('a page that subscribes on an open socket is live at once', async () => {
    const first = follow();
    await until(() => FakeSocket.sockets[0]?.subscriptions.length === 1, 'the subscription');
    first.close();
    expect(live.status()).toBe('idle');
    const second = follow();
    expect(live.status()).toBe('live');
    await until(() => FakeSocket.latest().subscriptions.length === 2, 'the second subscription');
    expect(FakeSocket.sockets).toHaveLength(1);
    second.close();
  });

  it('after a network drop, says so and resumes right after the last item it saw', async () => {
    const handle = follow();
    await until(() => FakeSocket.sockets[0]?.subscriptions.length === 1, 'the subscription');
    FakeSocket.latest().next({ jobUpdates: { cursor: 'c1' } });
    FakeSocket.latest().drop(1006);
    expect(live.status()).toBe('reconnecting');
    await until(() => FakeSocket.sockets.length === 2 && FakeSocket.sockets[1].subscriptions.length === 1, 'the resubscription');
    expect(FakeSocket.latest().subscriptions[0].variables).toEqual({ after: 'c1' });
    expect(live.status()).toBe('live');
    FakeSocket.latest().next({ jobUpdates: { cursor: 'c2' } });
    expect(seen).toEqual(['c1', 'c2']);
    handle.close();
  });

  it('on 4401 refreshes the token before reconnecting', async () => {
    const calls = fakeGraphql(() => ({ data: { refreshToken: authPayload('ADMIN', 2) } }));
    const handle = follow();
    await until(() => FakeSocket.sockets[0]?.subscriptions.length === 1, 'the subscription');
    FakeSocket.latest().next({ jobUpdates: { cursor: 'c5' } });
    FakeSocket.latest().drop(4401);
    await until(() => FakeSocket.sockets.length === 2 && FakeSocket.sockets[1].subscriptions.length === 1, 'the resubscription');
    expect(calls.filter((c) => c.query.includes('refreshToken('))).toHaveLength(1);
    expect(FakeSocket.latest().init).toEqual({ authorization: 'Bearer access-2' });
    expect(FakeSocket.latest().subscriptions[0].variables).toEqual({ after: 'c5' });
    handle.close();
  });

  it('on 4403 (a disabled account) ends the session and does not reconnect', async () => {
    const calls = fakeGraphql(() => ({
      errors: [{ message: 'this account is disabled; ask an admin', extensions: { code: 'UNAUTHENTICATED' } }],
    }));
    const handle = follow();
    await until(() => FakeSocket.sockets[0]?.subscriptions.length === 1, 'the subscription');
    FakeSocket.latest().drop(4403);
    await until(() => calls.some((c) => c.query.includes('refreshToken(')), 'the refresh');
    await new Promise((r) => setTimeout(r, 50));
    expect(localStorage.length).toBe(0);
    expect(FakeSocket.sockets).toHaveLength(1);
    handle.close();
  });

  it('reloads once per burst of changes, and not after closing', async () => {
    const reload = vi.fn();
    const handle = live.reloadOn('subscription { alertUpdates { event } }', reload, 30);
    await until(() => FakeSocket.sockets[0]?.subscriptions.length === 1, 'the subscription');
    for (let i = 0; i < 5; i++) FakeSocket.latest().next({ alertUpdates: { event: 'alert_updated' } });
    await until(() => reload.mock.calls.length === 1, 'the reload');
    await new Promise((r) => setTimeout(r, 60));
    expect(reload).toHaveBeenCalledTimes(1);
    FakeSocket.latest().next({ alertUpdates: { event: 'alert_resolved' } });
    handle.close();
    await new Promise((r) => setTimeout(r, 60));
    expect(reload).toHaveBeenCalledTimes(1);
  });

  it('tells the page when its cursor has expired, and forgets it', async () => {
    const expired = vi.fn();
    const handle = follow(expired);
    await until(() => FakeSocket.sockets[0]?.subscriptions.length === 1, 'the subscription');
    FakeSocket.latest().nextError('CURSOR_EXPIRED');
    expect(expired).toHaveBeenCalledTimes(1);
    handle.close();
  });
});
