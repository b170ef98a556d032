import { ApiError, explain, explainForm } from './api-error';

describe('ApiError', () => {
  it('keeps the code, field and retry hint the server sent', () => {
    const error = ApiError.from({
      message: 'not a timestamp',
      extensions: { code: 'BAD_USER_INPUT', field: 'input.payload.readings.0.ts' },
    });
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.field).toBe('input.payload.readings.0.ts');
    expect(error.message).toBe('not a timestamp');
  });

  it('treats an error without a code as internal', () => {
    expect(ApiError.from({ message: 'boom' }).code).toBe('INTERNAL');
  });

  it('prefixes a form error with the field the server names', () => {
    expect(explainForm(new ApiError('must not be empty', 'BAD_USER_INPUT', 'input.key'))).toBe('input.key: must not be empty');
    expect(explainForm(new ApiError('needs ADMIN', 'FORBIDDEN'))).toContain('Ask an admin');
  });

  it('tells the person what to do next', () => {
    expect(explain(new ApiError('Redis is unreachable', 'UNAVAILABLE', undefined, 5))).toBe('Redis is unreachable. Try again in 5 s.');
    expect(explain(new ApiError('x', 'NETWORK'))).toContain('Check your connection');
    expect(explain(new ApiError('needs ADMIN', 'FORBIDDEN'))).toContain('Ask an admin');
    expect(explain(new ApiError('secret detail', 'INTERNAL'))).not.toContain('secret detail');
  });
});
