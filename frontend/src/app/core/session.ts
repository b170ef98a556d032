import { Injectable, computed, signal } from '@angular/core';

export type Role = 'VIEWER' | 'OPERATOR' | 'ADMIN';

export interface User {
  id: string;
  email: string;
  role: Role;
  createdAt: string;
}

/** What register, login and refreshToken answer. */
export interface AuthPayload {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  user: User;
}

/** The tokens of one login, shared by every tab of the browser through localStorage. */
export interface StoredTokens {
  accessToken: string;
  refreshToken: string;
  /** Milliseconds since the epoch. */
  expiresAt: number;
  user: User;
}

export const STORAGE_KEY = 'steadfast.session';
const RANK: Record<Role, number> = { VIEWER: 0, OPERATOR: 1, ADMIN: 2 };

/**
 * The signed-in user and their tokens. Tokens live in localStorage so that a reload keeps
 * the session and so that tabs share one refresh-token family: refresh tokens are single
 * use, and two tabs rotating the same one would look like a stolen token to the server.
 */
@Injectable({ providedIn: 'root' })
export class Session {
  readonly user = signal<User | null>(null);
  readonly signedIn = computed(() => this.user() !== null);
  readonly role = computed(() => this.user()?.role ?? null);

  constructor() {
    const stored = this.stored();
    if (stored) this.user.set(stored.user);
    // Another tab signed in, out, or rotated the tokens.
    globalThis.addEventListener?.('storage', (event: StorageEvent) => {
      if (event.key === STORAGE_KEY || event.key === null) this.user.set(this.stored()?.user ?? null);
    });
  }

  can(role: Role): boolean {
    const mine = this.role();
    return mine !== null && RANK[mine] >= RANK[role];
  }

  stored(): StoredTokens | null {
    try {
      const raw = localStorage.getItem(STORAGE_KEY);
      if (!raw) return null;
      const parsed = JSON.parse(raw) as Partial<StoredTokens>;
      if (typeof parsed.refreshToken !== 'string' || typeof parsed.accessToken !== 'string') {
        return null;
      }
      return parsed as StoredTokens;
    } catch {
      return null;
    }
  }

  accessToken(): string | null {
    return this.stored()?.accessToken ?? null;
  }

  /** Whether the access token is gone or expires within `marginMs`. */
  expiresWithin(marginMs: number): boolean {
    const stored = this.stored();
    return !stored || stored.expiresAt - Date.now() < marginMs;
  }

  set(payload: AuthPayload): void {
    const tokens: StoredTokens = {
      accessToken: payload.accessToken,
      refreshToken: payload.refreshToken,
      expiresAt: Date.now() + payload.expiresIn * 1000,
      user: payload.user,
    };
    localStorage.setItem(STORAGE_KEY, JSON.stringify(tokens));
    this.user.set(payload.user);
  }

  clear(): void {
    localStorage.removeItem(STORAGE_KEY);
    this.user.set(null);
  }
}
