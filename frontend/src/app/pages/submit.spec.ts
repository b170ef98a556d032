import { TestBed } from '@angular/core/testing';
import { provideRouter, Router } from '@angular/router';
import { fakeGraphql, storeSession } from '../../testing/fake-server';
import { ApiError } from '../core/api-error';
import { SubmitPage, examplePayload, fieldErrors } from './submit';

describe('fieldErrors', () => {
  it('puts a payload error at the editor, naming the path inside the payload', () => {
    const e = new ApiError('expected an RFC 3339 timestamp', 'BAD_USER_INPUT', 'input.payload.readings.0.ts');
    expect(fieldErrors(e)).toEqual({ payload: 'readings.0.ts: expected an RFC 3339 timestamp' });
  });

  it('puts option errors at their inputs, and anything else above the button', () => {
    expect(fieldErrors(new ApiError('1 to 100', 'BAD_USER_INPUT', 'input.maxAttempts'))).toEqual({ maxAttempts: '1 to 100' });
    expect(fieldErrors(new ApiError('1 ms to 7 days', 'BAD_USER_INPUT', 'input.timeoutMs'))).toEqual({ timeoutMs: '1 ms to 7 days' });
    expect(fieldErrors(new ApiError('1 to 200 bytes', 'BAD_USER_INPUT', 'input.limitKey'))).toEqual({ limitKey: '1 to 200 bytes' });
    expect(fieldErrors(new ApiError('needs OPERATOR', 'FORBIDDEN')).other).toContain('Ask an admin');
  });
});

describe('SubmitPage', () => {
  beforeEach(() => {
    localStorage.clear();
    TestBed.configureTestingModule({ providers: [provideRouter([])] });
  });
  afterEach(() => vi.unstubAllGlobals());

  async function render() {
    const fixture = TestBed.createComponent(SubmitPage);
    await fixture.whenStable();
    return { fixture, element: fixture.nativeElement as HTMLElement };
  }

  it('prefills each kind with its example payload', async () => {
    storeSession('OPERATOR');
    const { fixture, element } = await render();
    fixture.componentInstance.chooseKind('NOTIFY');
    await fixture.whenStable();
    const editor = element.querySelector<HTMLTextAreaElement>('[data-testid="payload"]');
    expect(JSON.parse(editor?.value ?? '')).toEqual(examplePayload('NOTIFY'));
  });

  it('refuses malformed JSON without calling the server', async () => {
    storeSession('OPERATOR');
    const calls = fakeGraphql(() => ({ data: {} }));
    const { fixture, element } = await render();
    const editor = element.querySelector<HTMLTextAreaElement>('[data-testid="payload"]');
    if (!editor) throw new Error('no editor');
    editor.value = '{ "readings": [';
    editor.dispatchEvent(new Event('input'));
    await fixture.componentInstance.submit();
    await fixture.whenStable();
    expect(calls).toHaveLength(0);
    expect(element.querySelector('[data-testid="payload-error"]')?.textContent).toContain('Not valid JSON');
  });

  it('shows the field the server names, and goes to the job once accepted', async () => {
    storeSession('OPERATOR');
    let accept = false;
    const calls = fakeGraphql(() =>
      accept
        ? { data: { submitJob: { duplicate: false, job: { id: 'J1' } } } }
        : { errors: [{ message: 'must be 1 to 100', extensions: { code: 'BAD_USER_INPUT', field: 'input.maxAttempts' } }] },
    );
    const { fixture, element } = await render();
    const navigate = vi.spyOn(TestBed.inject(Router), 'navigate').mockResolvedValue(true);
    await fixture.componentInstance.submit();
    await fixture.whenStable();
    expect(element.querySelector('[data-testid="max-attempts-error"]')?.textContent).toContain('must be 1 to 100');
    expect(navigate).not.toHaveBeenCalled();

    accept = true;
    await fixture.componentInstance.submit();
    expect(calls[1].variables).toMatchObject({ input: { kind: 'INGEST' } });
    expect(navigate).toHaveBeenCalledWith(['/jobs', 'J1'], { queryParams: {} });
  });

  it('sends a priority only when it is not normal', async () => {
    storeSession('OPERATOR');
    const calls = fakeGraphql(() => ({ data: { submitJob: { duplicate: false, job: { id: 'J2' } } } }));
    const { fixture, element } = await render();
    vi.spyOn(TestBed.inject(Router), 'navigate').mockResolvedValue(true);
    await fixture.componentInstance.submit();
    expect((calls[0].variables as { input: Record<string, unknown> }).input).not.toHaveProperty('priority');
    const select = element.querySelector<HTMLSelectElement>('[data-testid="priority"]');
    if (!select) throw new Error('no priority select');
    select.value = 'HIGH';
    select.dispatchEvent(new Event('change'));
    await fixture.whenStable();
    await fixture.componentInstance.submit();
    expect(calls[1].variables).toMatchObject({ input: { priority: 'HIGH' } });
  });

  it('tells a viewer that submitting needs the operator role', async () => {
    storeSession('VIEWER');
    const { element } = await render();
    expect(element.textContent).toContain('needs the operator role');
    expect(element.querySelector<HTMLButtonElement>('button[type="submit"]')?.disabled).toBe(true);
  });
});
