import { Injectable, inject } from '@angular/core';
import { ApiError, GraphqlErrorBody } from './api-error';
import { AuthPayload, Session } from './session';

interface GraphqlResponse<T> {
  data?: T | null;
  errors?: GraphqlErrorBody[];
}

/** Refresh this long before the access token expires, so no request carries a dead one. */
const REFRESH_MARGIN_MS = 30_000;

const REFRESH = `mutation Refresh($token: String!) {
  refreshToken(refreshToken: $token) { accessToken refreshToken expiresIn user { id email role createdAt } }
}`;

/**
 * GraphQL over HTTP: a `fetch` wrapper that adds the access token, refreshes it when it is
 * about to expire or the server says it has, and turns every failure into an `ApiError`.
 */
@Injectable({ providedIn: 'root' })
export class Graphql {
  private readonly session = inject(Session);
  private refreshing: Promise<boolean> | null = null;
  endpoint = '/graphql';

  async request<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    if (this.session.stored() && this.session.expiresWithin(REFRESH_MARGIN_MS)) {
      await this.refresh();
    }
    let response = await this.post<T>(query, variables, this.session.accessToken());
    if (isUnauthenticated(response) && this.session.stored() && (await this.refresh(true))) {
      response = await this.post<T>(query, variables, this.session.accessToken());
    }
    const first = response.errors?.[0];
    if (first) throw ApiError.from(first);
    if (response.data == null) throw new ApiError('The server answered without data', 'INTERNAL');
    return response.data;
  }

  /** An access token good for at least the refresh margin, or null when signed out. */
  async freshAccessToken(): Promise<string | null> {
    if (this.session.stored() && this.session.expiresWithin(REFRESH_MARGIN_MS)) {
      await this.refresh();
    }
    return this.session.accessToken();
  }

  /**
   * Trades the refresh token for a new pair; true when the session goes on. Calls are
   * shared within a tab, and serialised across tabs by a Web Lock: a tab that finds the
   * stored pair already rotated by another tab adopts it instead of spending a token twice.
   */
  refresh(force = false): Promise<boolean> {
    if (!this.refreshing) {
      const before = this.session.stored()?.refreshToken;
      const run = () => this.refreshOnce(before, force);
      const locks = globalThis.navigator?.locks;
      this.refreshing = (locks ? locks.request('steadfast-refresh', run) : run()).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async refreshOnce(before: string | undefined, force: boolean): Promise<boolean> {
    const stored = this.session.stored();
    if (!stored) {
      this.session.clear();
      return false;
    }
    const rotatedElsewhere = stored.refreshToken !== before;
    if (rotatedElsewhere || (!force && !this.session.expiresWithin(REFRESH_MARGIN_MS))) {
      this.session.user.set(stored.user);
      return true;
    }
    let response: GraphqlResponse<{ refreshToken: AuthPayload }>;
    try {
      response = await this.post(REFRESH, { token: stored.refreshToken }, null);
    } catch {
      // No answer: keep the session; the next request tries again.
      return false;
    }
    const payload = response.data?.refreshToken;
    if (payload) {
      this.session.set(payload);
      return true;
    }
    const code = response.errors?.[0]?.extensions?.code;
    if (code === 'UNAUTHENTICATED' || code === 'BAD_USER_INPUT') this.session.clear();
    return false;
  }

  private async post<T>(
    query: string,
    variables: Record<string, unknown>,
    token: string | null,
  ): Promise<GraphqlResponse<T>> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token) headers['authorization'] = `Bearer ${token}`;
    let response: Response;
    try {
      response = await fetch(this.endpoint, {
        method: 'POST',
        headers,
        body: JSON.stringify({ query, variables }),
      });
    } catch {
      throw new ApiError('The server did not answer', 'NETWORK');
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`The server answered ${response.status} without a GraphQL body`, response.status >= 500 ? 'UNAVAILABLE' : 'INTERNAL');
    }
    if (typeof body !== 'object' || body === null) {
      throw new ApiError('The server answered something that is not GraphQL', 'INTERNAL');
    }
    return body as GraphqlResponse<T>;
  }
}

function isUnauthenticated(response: GraphqlResponse<unknown>): boolean {
  return response.errors?.some((e) => e.extensions?.code === 'UNAUTHENTICATED') ?? false;
}
