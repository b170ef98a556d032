import { Injectable, inject, signal } from '@angular/core';
import { Client, createClient } from 'graphql-ws';
import { ApiError, GraphqlErrorBody } from './api-error';
import { Graphql } from './graphql';
import { Session } from './session';

export type LiveStatus = 'idle' | 'connecting' | 'live' | 'reconnecting';

export interface LiveSubscription<T> {
  query: string;
  /** Variables for a (re)subscription resuming after `cursor` (undefined: from now). */
  variables: (cursor: string | undefined) => Record<string, unknown>;
  next: (data: T) => void;
  /** The stream position an item carries, to resume right after it. */
  cursorOf?: (data: T) => string | undefined;
  /** The server no longer holds the cursor: the caller should reload and resubscribe. */
  expired?: () => void;
  cursor?: string;
}

export interface LiveHandle {
  close(): void;
}

const UNAUTHORIZED = 4401;
/** The server closed the socket of an account an admin disabled. */
const FORBIDDEN = 4403;
const MAX_BACKOFF_MS = 15_000;

/**
 * GraphQL subscriptions over graphql-ws that survive network drops and expired tokens.
 * graphql-ws's own retry would resubscribe with the original variables and replay from
 * the first cursor; here every subscription resumes from the last cursor it saw instead,
 * and a 4401 close refreshes the token before reconnecting. A 4403 (an account an admin
 * disabled) tries the same refresh; the server refuses it, the session ends, and nothing
 * reconnects.
 */
@Injectable({ providedIn: 'root' })
export class Live {
  private readonly graphql = inject(Graphql);
  private readonly session = inject(Session);
  readonly status = signal<LiveStatus>('idle');
  private client: Client | null = null;
  private active = 0;
  private socketOpen = false;
  private everConnected = false;
  url = defaultUrl();
  /** The WebSocket class to use; the browser's own unless a test swaps it. */
  webSocketImpl: unknown = undefined;

  subscribe<T>(spec: LiveSubscription<T>): LiveHandle {
    let closed = false;
    let failures = 0;
    let dispose: (() => void) | null = null;
    let timer: ReturnType<typeof setTimeout> | null = null;
    this.active++;
    this.showStatus();

    const start = () => {
      if (closed) return;
      dispose = this.ensureClient().subscribe<T>(
        { query: spec.query, variables: spec.variables(spec.cursor) },
        {
          next: (result) => {
            failures = 0;
            const error = result.errors?.[0] as GraphqlErrorBody | undefined;
            if (error) {
              const apiError = ApiError.from(error);
              if (apiError.code === 'CURSOR_EXPIRED') {
                spec.cursor = undefined;
                spec.expired?.();
              }
              return;
            }
            if (!result.data) return;
            const data = result.data as T;
            const cursor = spec.cursorOf?.(data);
            if (cursor) spec.cursor = cursor;
            spec.next(data);
          },
          error: (error: unknown) => retry(error),
          complete: () => retry(null),
        },
      );
    };

    const retry = (error: unknown) => {
      dispose = null;
      if (closed) return;
      failures++;
      const code = closeCode(error);
      const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures - 1, 6)) * (0.5 + Math.random() / 2);
      const again = async () => {
        if (code === UNAUTHORIZED || code === FORBIDDEN) {
          await this.graphql.refresh(true);
          // Refused: the session has ended, and there is no one to reconnect as.
          if (!this.session.stored()) return;
        }
        start();
      };
      timer = setTimeout(() => void again(), failures === 1 && code === UNAUTHORIZED ? 0 : delay);
    };

    start();
    return {
      close: () => {
        if (closed) return;
        closed = true;
        if (timer) clearTimeout(timer);
        dispose?.();
        this.active--;
        this.showStatus();
      },
    };
  }

  /**
   * Calls `reload` after the changes a subscription reports, at most once per `everyMs`: the
   * first change starts the wait, and the reload after it covers every change meanwhile.
   * For pages whose data comes from SQL, which follows the event stream a moment behind.
   */
  reloadOn(query: string, reload: () => void, everyMs: number): LiveHandle {
    let timer: ReturnType<typeof setTimeout> | null = null;
    const subscription = this.subscribe<unknown>({
      query,
      variables: () => ({}),
      next: () => {
        if (timer) return;
        timer = setTimeout(() => {
          timer = null;
          reload();
        }, everyMs);
      },
    });
    return {
      close: () => {
        if (timer) clearTimeout(timer);
        subscription.close();
      },
    };
  }

  /** Idle with nothing subscribed; otherwise whether the socket is up, or was and dropped. */
  private showStatus(): void {
    if (this.active === 0) this.status.set('idle');
    else if (this.socketOpen) this.status.set('live');
    else this.status.set(this.everConnected ? 'reconnecting' : 'connecting');
  }

  private ensureClient(): Client {
    if (this.client) return this.client;
    this.client = createClient({
      url: this.url,
      webSocketImpl: this.webSocketImpl,
      lazy: true,
      lazyCloseTimeout: 2_000,
      keepAlive: 10_000,
      // Each subscription reconnects by itself, from its own cursor.
      retryAttempts: 0,
      connectionParams: async () => {
        const token = await this.graphql.freshAccessToken();
        return token ? { authorization: `Bearer ${token}` } : {};
      },
      on: {
        connected: () => {
          this.socketOpen = true;
          this.everConnected = true;
          this.showStatus();
        },
        closed: () => {
          this.socketOpen = false;
          this.showStatus();
        },
      },
    });
    return this.client;
  }
}

function closeCode(error: unknown): number | null {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === 'number' ? code : null;
  }
  return null;
}

function defaultUrl(): string {
  const location = globalThis.location;
  if (!location) return 'ws://localhost/graphql/ws';
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/graphql/ws`;
}
