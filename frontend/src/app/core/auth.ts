import { Injectable, inject } from '@angular/core';
import { CanActivateFn, Router } from '@angular/router';
import { Graphql } from './graphql';
import { AuthPayload, Session } from './session';

const PAYLOAD = 'accessToken refreshToken expiresIn user { id email role createdAt }';

export interface SignUpPolicy {
  open: boolean;
  bootstrapTokenRequired: boolean;
}

/** Signing in, registering, restoring a session after a reload, and signing out. */
@Injectable({ providedIn: 'root' })
export class Auth {
  private readonly graphql = inject(Graphql);
  private readonly session = inject(Session);

  async login(email: string, password: string): Promise<void> {
    const data = await this.graphql.request<{ login: AuthPayload }>(
      `mutation Login($email: String!, $password: String!) { login(email: $email, password: $password) { ${PAYLOAD} } }`,
      { email, password },
    );
    this.session.set(data.login);
  }

  /** `bootstrapToken`: the server's BOOTSTRAP_ADMIN_TOKEN, for a production deployment's first admin. */
  async register(email: string, password: string, bootstrapToken?: string): Promise<void> {
    const data = await this.graphql.request<{ register: AuthPayload }>(
      `mutation Register($email: String!, $password: String!, $bootstrapToken: String) {
        register(email: $email, password: $password, bootstrapToken: $bootstrapToken) { ${PAYLOAD} } }`,
      { email, password, bootstrapToken: bootstrapToken || null },
    );
    this.session.set(data.register);
  }

  /** Whether anyone may register now (no account yet, or open sign-up) and whether that needs the bootstrap token. */
  async signUpPolicy(): Promise<SignUpPolicy> {
    const data = await this.graphql.request<{ signUpPolicy: SignUpPolicy }>(
      '{ signUpPolicy { open bootstrapTokenRequired } }',
    );
    return data.signUpPolicy;
  }

  /** Whether a stored session is still good (refreshing it if it has to). */
  async restore(): Promise<boolean> {
    if (!this.session.stored()) return false;
    return (await this.graphql.freshAccessToken()) !== null && this.session.signedIn();
  }

  /** Revokes the login on the server; the local session ends even if that fails. */
  async logout(): Promise<void> {
    const stored = this.session.stored();
    this.session.clear();
    if (!stored) return;
    try {
      await this.graphql.request(`mutation Logout($token: String!) { logout(refreshToken: $token) }`, {
        token: stored.refreshToken,
      });
    } catch {
      // The refresh token expires by itself; the local copy is already gone.
    }
  }
}

/** Pages behind sign-in: send the visitor to /login and back to where they were going. */
export const signedIn: CanActivateFn = async (_route, state) => {
  const auth = inject(Auth);
  const router = inject(Router); // before the await: inject() needs the injection context
  if (await auth.restore()) return true;
  return router.createUrlTree(['/login'], { queryParams: { next: state.url } });
};
