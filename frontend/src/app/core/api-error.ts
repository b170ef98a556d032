/** One GraphQL error as the API sends it: every error carries `extensions.code`. */
export interface GraphqlErrorBody {
  message: string;
  extensions?: { code?: string; field?: string; retryAfterSeconds?: number };
}

/** Codes the API sends, plus NETWORK when no answer arrived at all. */
export type ErrorCode =
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'BAD_USER_INPUT'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'UNAVAILABLE'
  | 'RATE_LIMITED'
  | 'LIMIT_EXCEEDED'
  | 'CURSOR_EXPIRED'
  | 'INTERNAL'
  | 'NETWORK';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: ErrorCode | string,
    /** The input field the server blames, e.g. `input.payload.readings.0.ts`. */
    readonly field?: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  static from(body: GraphqlErrorBody): ApiError {
    const ext = body.extensions ?? {};
    return new ApiError(body.message, ext.code ?? 'INTERNAL', ext.field, ext.retryAfterSeconds);
  }
}

/** A sentence for the person at the screen: what went wrong and what to do next. */
export function explain(error: unknown): string {
  if (!(error instanceof ApiError)) {
    return error instanceof Error ? error.message : String(error);
  }
  switch (error.code) {
    case 'NETWORK':
      return 'The server did not answer. Check your connection; the page retries when you try again.';
    case 'UNAUTHENTICATED':
      return 'Your session has ended. Sign in again.';
    case 'FORBIDDEN':
      return `${error.message}. Ask an admin for a higher role.`;
    case 'UNAVAILABLE':
    case 'RATE_LIMITED': {
      const wait = error.retryAfterSeconds;
      return wait ? `${error.message}. Try again in ${wait} s.` : `${error.message}. Try again shortly.`;
    }
    case 'CONFLICT':
      return 'Someone changed this since you loaded it, so nothing was saved. The page shows it as it is now: apply your change again.';
    case 'INTERNAL':
      return 'The server hit an unexpected error; it has been logged. Try again, or tell your operator.';
    default:
      return error.message;
  }
}

/** Like `explain`, prefixed with the input field the server blames, for a form. */
export function explainForm(error: unknown): string {
  return error instanceof ApiError && error.field && error.code !== 'CONFLICT'
    ? `${error.field}: ${error.message}`
    : explain(error);
}
