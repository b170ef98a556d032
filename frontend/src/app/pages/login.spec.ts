import { TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';
import { fakeGraphql } from '../../testing/fake-server';
import { LoginPage } from './login';

describe('LoginPage', () => {
  beforeEach(() => {
    localStorage.clear();
    TestBed.configureTestingModule({ providers: [provideRouter([])] });
  });
  afterEach(() => vi.unstubAllGlobals());

  async function render(policy: { open: boolean; bootstrapTokenRequired: boolean }) {
    const calls = fakeGraphql((call) =>
      call.query.includes('signUpPolicy')
        ? { data: { signUpPolicy: policy } }
        : { errors: [{ message: 'sign-up is closed', extensions: { code: 'FORBIDDEN' } }] },
    );
    const fixture = TestBed.createComponent(LoginPage);
    await fixture.whenStable();
    // The policy arrives by fetch, which the fixture does not wait for.
    await new Promise((r) => setTimeout(r, 0));
    await fixture.whenStable();
    return { fixture, calls, element: fixture.nativeElement as HTMLElement };
  }

  it('offers no sign-up where the server takes none, and says who creates accounts', async () => {
    const { element } = await render({ open: false, bootstrapTokenRequired: false });
    const buttons = [...element.querySelectorAll('button')].map((b) => b.textContent?.trim());
    expect(buttons).not.toContain('Create an account');
    expect(element.querySelector('[data-testid="signup-closed"]')?.textContent).toContain('An admin creates accounts');
  });

  it('asks the first admin of a production deployment for the bootstrap token, and sends it', async () => {
    const { fixture, calls, element } = await render({ open: true, bootstrapTokenRequired: true });
    const create = [...element.querySelectorAll('button')].find((b) => b.textContent?.trim() === 'Create an account');
    if (!create) throw new Error('no sign-up link');
    create.click();
    await fixture.whenStable();
    const token = element.querySelector<HTMLInputElement>('input[name="bootstrapToken"]');
    if (!token) throw new Error('no bootstrap token field');
    token.value = 'bootstrap-secret';
    token.dispatchEvent(new Event('input'));
    await fixture.whenStable();
    await fixture.componentInstance.submit();
    const register = calls.find((c) => c.query.includes('register('));
    expect(register?.variables['bootstrapToken']).toBe('bootstrap-secret');
  });
});
