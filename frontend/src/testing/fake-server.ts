import { vi } from 'vitest';
import { STORAGE_KEY, StoredTokens, User } from '../app/core/session';

export interface GraphqlCall {
  query: string;
  variables: Record<string, unknown>;
  authorization: string | null;
}

type Answer = { data?: unknown; errors?: { message: string; extensions?: Record<string, unknown> }[] };

/**
 * Replaces `fetch` with a GraphQL endpoint answered by `answer`, recording every call.
 * Unit tests only: the end-to-end suite talks to the real server.
 */
export function fakeGraphql(answer: (call: GraphqlCall) => Answer | Promise<Answer>): GraphqlCall[] {
  const calls: GraphqlCall[] = [];
  vi.stubGlobal('fetch', async (_url: string, init: RequestInit) => {
    const body = JSON.parse(String(init.body)) as { query: string; variables: Record<string, unknown> };
    const headers = (init.headers ?? {}) as Record<string, string>;
    const call = { query: body.query, variables: body.variables, authorization: headers['authorization'] ?? null };
    calls.push(call);
    return new Response(JSON.stringify(await answer(call)), { status: 200, headers: { 'content-type': 'application/json' } });
  });
  return calls;
}

export function user(role: User['role'], id = '1'): User {
  return { id, email: `${role.toLowerCase()}@example.com`, role, createdAt: '2026-11-21T00:00:00Z' };
}

/** Stores a signed-in session as the app would after login. */
export function storeSession(role: User['role'], overrides: Partial<StoredTokens> = {}): StoredTokens {
  const tokens: StoredTokens = {
    accessToken: 'access-1',
    refreshToken: 'refresh-1',
    expiresAt: Date.now() + 15 * 60_000,
    user: user(role),
    ...overrides,
  };
  localStorage.setItem(STORAGE_KEY, JSON.stringify(tokens));
  return tokens;
}

export function authPayload(role: User['role'], n: number) {
  return { accessToken: `access-${n}`, refreshToken: `refresh-${n}`, expiresIn: 900, user: user(role) };
}
