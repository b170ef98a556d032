import { TestBed } from '@angular/core/testing';
import { Router, provideRouter } from '@angular/router';
import { FakeSocket } from '../testing/fake-socket';
import { storeSession } from '../testing/fake-server';
import { App } from './app';
import { Live } from './core/live';
import { Session } from './core/session';

describe('App', () => {
  beforeEach(() => {
    localStorage.clear();
    TestBed.configureTestingModule({ providers: [provideRouter([])] });
  });

  it('shows who is signed in, and sends the page to sign-in when the session ends under it', async () => {
    storeSession('OPERATOR'); // before anything injects the Session, as on a reload
    TestBed.inject(Live).webSocketImpl = FakeSocket;
    const router = TestBed.inject(Router);
    const navigate = vi.spyOn(router, 'navigate').mockResolvedValue(true);
    const fixture = TestBed.createComponent(App);
    await fixture.whenStable();
    const element = fixture.nativeElement as HTMLElement;
    expect(element.querySelector('.who')?.textContent).toContain('operator@example.com');
    expect(navigate).not.toHaveBeenCalled();

    TestBed.inject(Session).clear();
    await fixture.whenStable();
    expect(navigate).toHaveBeenCalledWith(['/login'], { queryParams: { next: '/' } });
    expect(element.querySelector('.top')).toBeNull();
  });
});
