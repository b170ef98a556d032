import { TestBed } from '@angular/core/testing';
import { authPayload, fakeGraphql, storeSession } from '../../testing/fake-server';
import { ApiError } from './api-error';
import { Graphql } from './graphql';
import { Session, STORAGE_KEY } from './session';

describe('Graphql', () => {
  beforeEach(() => localStorage.clear());
  afterEach(() => vi.unstubAllGlobals());

  it('sends the access token and answers the data', async () => {
    storeSession('ADMIN');
    const calls = fakeGraphql(() => ({ data: { me: { id: '1' } } }));
    const data = await TestBed.inject(Graphql).request<{ me: { id: string } }>('{ me { id } }');
    expect(data.me.id).toBe('1');
    expect(calls[0].authorization).toBe('Bearer access-1');
  });

  it('refreshes once when the server says the token is dead, then retries', async () => {
    storeSession('OPERATOR');
    let refreshed = 0;
    const calls = fakeGraphql((call) => {
      if (call.query.includes('refreshToken(')) {
        refreshed++;
        return { data: { refreshToken: authPayload('OPERATOR', 2) } };
      }
      if (call.authorization === 'Bearer access-1') {
        return { errors: [{ message: 'token expired', extensions: { code: 'UNAUTHENTICATED' } }] };
      }
      return { data: { ok: true } };
    });
    await expect(TestBed.inject(Graphql).request('{ ok }')).resolves.toEqual({ ok: true });
    expect(refreshed).toBe(1);
    expect(calls.map((c) => c.authorization)).toEqual(['Bearer access-1', null, 'Bearer access-2']);
    expect(JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}').refreshToken).toBe('refresh-2');
  });

  it('ends the session when the refresh token is refused', async () => {
    storeSession('VIEWER', { expiresAt: Date.now() - 1000 });
    fakeGraphql(() => ({ errors: [{ message: 'refresh token reused', extensions: { code: 'UNAUTHENTICATED' } }] }));
    const graphql = TestBed.inject(Graphql);
    await expect(graphql.request('{ me { id } }')).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(TestBed.inject(Session).signedIn()).toBe(false);
    expect(localStorage.getItem(STORAGE_KEY)).toBeNull();
  });

  it('shares one refresh between concurrent requests, so a token is never spent twice', async () => {
    storeSession('ADMIN', { expiresAt: Date.now() + 5_000 });
    let refreshes = 0;
    fakeGraphql((call) => {
      if (call.query.includes('refreshToken(')) {
        refreshes++;
        return { data: { refreshToken: authPayload('ADMIN', 2) } };
      }
      return { data: { ok: call.authorization } };
    });
    const graphql = TestBed.inject(Graphql);
    const answers = await Promise.all([graphql.request('{ a }'), graphql.request('{ b }'), graphql.request('{ c }')]);
    expect(refreshes).toBe(1);
    expect(answers).toEqual([{ ok: 'Bearer access-2' }, { ok: 'Bearer access-2' }, { ok: 'Bearer access-2' }]);
  });

  it('adopts a pair another tab already rotated instead of spending the old token', async () => {
    storeSession('ADMIN', { expiresAt: Date.now() + 5_000 });
    let release = () => {};
    const gate = new Promise<void>((done) => (release = done));
    vi.stubGlobal('navigator', {
      locks: { request: async (_name: string, run: () => Promise<boolean>) => gate.then(run) },
    });
    const calls = fakeGraphql(() => ({ data: { refreshToken: authPayload('ADMIN', 3) } }));
    const graphql = TestBed.inject(Graphql);
    const refreshing = graphql.refresh();
    // Another tab holds the lock and rotates the pair meanwhile.
    storeSession('ADMIN', { accessToken: 'access-9', refreshToken: 'refresh-9' });
    release();
    await expect(refreshing).resolves.toBe(true);
    expect(calls).toHaveLength(0);
    expect(TestBed.inject(Session).accessToken()).toBe('access-9');
  });

  it('turns no answer into a NETWORK error', async () => {
    vi.stubGlobal('fetch', async () => {
      throw new TypeError('Failed to fetch');
    });
    const error = await TestBed.inject(Graphql)
      .request('{ me { id } }')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe('NETWORK');
  });
});
